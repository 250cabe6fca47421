"""The instructor kit: exercises, the student version, the autograder, Gradescope's results.json.

- `lessons`  the one table of lessons (number, title, reading, notebook, modules, tests);
- `regions`  finding the exercise regions (`### BEGIN SOLUTION name=... points=...`);
- `student`  writing the student version (regions replaced by `raise NotImplementedError`);
- `plugin`   the pytest plugin the grader loads into the test process (a copy outside the workspace);
- `sandbox`  where submitted code runs: its own uid, mount namespace, limits, and its end;
- `runner`   pytest in that sandbox under a watchdog, results read over an authenticated pipe;
- `grader`   the workspace, points, flags and Gradescope's results.json;
- `check`    the proof that the tests grade (`minillm assign check`).

The command line is `minillm/commands/assign.py`; lessons/README.md is the manual and
states the grader's threat model.
"""
