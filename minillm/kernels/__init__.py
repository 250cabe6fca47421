"""Lesson 14, the GPU path: fewer bits, fewer trips to memory, more GPUs.

One concept per module:

* `formats`        number formats from their bit layout (fp32, tf32, bf16, fp16, fp8) and where each fails;
* `scaler`         fp16 dynamic loss scaling, from scratch (checked against `torch.amp.GradScaler`);
* `fusion`         bytes moved per op, fused vs unfused, arithmetic intensity and the roofline;
* `memory`         peak bytes of the tensors a piece of code allocates (a CPU-friendly measurement);
* `tiled`          tiled attention with the online softmax (forward + backward from the log-sum-exp);
* `chunked_ce`     fused linear + cross-entropy that never materialises the (B*T, V) logits;
* `checkpointing`  activation checkpointing per transformer block;
* `parallel`       FSDP (PyTorch's `fully_shard`) for a GPT;
* `triton_ops`     the same kernels in Triton (optional extra; CPU via TRITON_INTERPRET=1).

The submodules are imported by name (`from minillm.kernels import tiled`): nothing
heavy, and nothing optional (Triton), is imported here.
"""
