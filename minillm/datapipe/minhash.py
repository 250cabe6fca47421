"""Near-duplicate detection: MinHash signatures and locality-sensitive hashing (LSH).

Builds shingling, MinHash signatures (a plain reference and a NumPy fast path,
tested equal), LSH banding (reference and fast path), the S-curve, and the stage
`minhash_dedup(docs)`. It follows Broder (1997) for MinHash and the banding of
Leskovec, Rajaraman & Ullman, *Mining of Massive Datasets*, ch. 3; the default
parameters are FineWeb's (datatrove: word 5-grams, 14 bands x 8 rows = 112 hashes).

- A document is the set S of its word 5-grams ("shingles"), each hashed to 32 bits.
- A random hash function h_i(x) = ((a_i x + b_i) mod p) & (2^32 - 1), p = 2^61 - 1,
  maps every shingle; the signature keeps min over S of h_i, for i = 1..num_perm.
  For two sets, P[min h_i(S) == min h_i(T)] = Jaccard(S, T) = |S & T| / |S | T|, so
  the fraction of equal signature entries estimates the Jaccard similarity with
  standard error sqrt(J (1 - J) / num_perm).
- LSH cuts the signature into b bands of r rows; two documents are *candidates* when
  some band is equal. P[candidate] = 1 - (1 - s^r)^b: an S-curve in s, steepest near
  the threshold (1/b)^(1/r) (0.72 for 14 x 8).

The hash constants follow datasketch's MinHash exactly (same seed -> same a_i, b_i,
SHA-1 of the shingle bytes), so the interop test can compare signatures one to one.
Left out: weighted MinHash, SimHash, suffix-array substring dedup.
"""

from __future__ import annotations

import hashlib
import re
import struct
import time
from collections import defaultdict

import numpy as np

from minillm.datapipe.base import stage_stats

MERSENNE = (1 << 61) - 1
MAX_HASH = (1 << 32) - 1
MASK64 = (1 << 64) - 1
_WORD = re.compile(r"\w+")


def shingles(text: str, n: int = 5) -> set[bytes]:
    """The set of word n-grams of the lower-cased text (one shingle if it has < n words).

    Example: `shingles("A b a b", 2)` -> {b'a b', b'b a'}.
    """
    words = _WORD.findall(text.lower())
    if len(words) < n:
        return {" ".join(words).encode()} if words else set()
    return {" ".join(words[i:i + n]).encode() for i in range(len(words) - n + 1)}


def hash32(shingle: bytes) -> int:
    """The first 4 bytes of SHA-1, little-endian (datasketch's sha1_hash32)."""
    return struct.unpack("<I", hashlib.sha1(shingle).digest()[:4])[0]


def permutations(num_perm: int = 112, seed: int = 1) -> np.ndarray:
    """(2, num_perm) uint64: the a_i (>= 1) and b_i of the hash functions, as datasketch draws them."""
    gen = np.random.RandomState(seed)
    return np.array([(gen.randint(1, MERSENNE, dtype=np.uint64), gen.randint(0, MERSENNE, dtype=np.uint64))
                     for _ in range(num_perm)], dtype=np.uint64).T


def minhash_signature_reference(text: str, perms: np.ndarray, n: int = 5) -> list[int]:
    """The MinHash signature of `text`, one plain loop per hash function.

    perms: (2, num_perm) from `permutations`. For hash function i and shingle hash x,
    h_i(x) = (((a_i * x + b_i) mod 2^64) mod p) & (2^32 - 1) (the mod 2^64 is the
    wrap-around of 64-bit integers, kept to match datasketch). An empty document
    has every entry MAX_HASH.
    """
    ### BEGIN SOLUTION name=minhash.signature points=3
    ### HINT: shingle the text, hash each shingle with hash32, then for each (a, b) keep the smallest h(x).
    xs = [hash32(s) for s in shingles(text, n)]
    sig = []
    for a, b in zip(perms[0].tolist(), perms[1].tolist()):
        best = MAX_HASH
        for x in xs:
            best = min(best, (((a * x + b) & MASK64) % MERSENNE) & MAX_HASH)
        sig.append(best)
    return sig
    ### END SOLUTION


def minhash_signature(text: str, perms: np.ndarray, n: int = 5) -> np.ndarray:
    """The fast path: (num_perm,) uint64, all hash functions x all shingles in one array op."""
    xs = np.array([hash32(s) for s in shingles(text, n)], dtype=np.uint64)
    if xs.size == 0:
        return np.full(perms.shape[1], MAX_HASH, dtype=np.uint64)
    a, b = perms[0][:, None], perms[1][:, None]            # (num_perm, 1)
    with np.errstate(over="ignore"):                        # uint64 wrap-around is intended
        h = ((a * xs[None, :] + b) % np.uint64(MERSENNE)) & np.uint64(MAX_HASH)  # (num_perm, |S|)
    return h.min(axis=1)


def jaccard(a: set, b: set) -> float:
    """|a & b| / |a | b| (1.0 for two empty sets)."""
    return len(a & b) / len(a | b) if (a or b) else 1.0


def estimate_jaccard(sig_a, sig_b) -> float:
    """The fraction of equal signature entries."""
    return float(np.mean(np.asarray(sig_a) == np.asarray(sig_b)))


def lsh_probability(s, bands: int, rows: int):
    """P[two documents of Jaccard s become candidates] = 1 - (1 - s^rows)^bands."""
    return 1.0 - (1.0 - np.asarray(s, dtype=float) ** rows) ** bands


def lsh_threshold(bands: int, rows: int) -> float:
    """(1/bands)^(1/rows): roughly where the S-curve crosses 1/2 (0.72 for 14 x 8)."""
    return (1.0 / bands) ** (1.0 / rows)


def candidate_pairs_reference(sigs: np.ndarray, bands: int, rows: int) -> set[tuple[int, int]]:
    """Pairs (i, j), i < j, of rows of `sigs` (N, num_perm) that agree on some whole band.

    Band k is the columns k*rows .. (k+1)*rows - 1; each band puts the documents in
    buckets by its values, and every two documents sharing a bucket are a pair.
    """
    ### BEGIN SOLUTION name=minhash.lsh points=3
    ### HINT: for each band, group documents by the tuple of their values in that band; pair up each group.
    pairs = set()
    for k in range(bands):
        buckets = defaultdict(list)
        for i, sig in enumerate(sigs):
            buckets[tuple(int(v) for v in sig[k * rows:(k + 1) * rows])].append(i)
        for members in buckets.values():
            for x in range(len(members)):
                for y in range(x + 1, len(members)):
                    pairs.add((members[x], members[y]))
    return pairs
    ### END SOLUTION


def candidate_pairs(sigs: np.ndarray, bands: int, rows: int) -> set[tuple[int, int]]:
    """The fast path: per band, `np.unique` over rows finds the buckets at once."""
    sigs = np.asarray(sigs, dtype=np.uint64)
    if sigs.shape[1] < bands * rows:
        from minillm.utils import MiniLLMError

        raise MiniLLMError(f"bands x rows = {bands * rows} exceeds the signature length {sigs.shape[1]}")
    pairs = set()
    for k in range(bands):
        _, inverse = np.unique(sigs[:, k * rows:(k + 1) * rows], axis=0, return_inverse=True)
        inverse = inverse.reshape(-1)
        order = np.argsort(inverse, kind="stable")
        groups = np.split(order, np.flatnonzero(np.diff(inverse[order])) + 1)
        for g in groups:
            g = g.tolist()
            pairs.update((g[x], g[y]) for x in range(len(g)) for y in range(x + 1, len(g)))
    return pairs


def clusters_to_drop(n: int, pairs: set[tuple[int, int]]) -> set[int]:
    """Union-find over the pairs; every member of a cluster but its first (lowest index) is dropped."""
    parent = list(range(n))

    def find(i: int) -> int:
        while parent[i] != i:
            parent[i] = parent[parent[i]]
            i = parent[i]
        return i

    for i, j in pairs:
        ri, rj = find(i), find(j)
        if ri != rj:
            parent[max(ri, rj)] = min(ri, rj)  # the root is the lowest index: the one kept
    return {i for i in range(n) if find(i) != i}


def minhash_dedup(docs: list[dict], num_perm: int = 112, bands: int = 14, rows: int = 8,
                  ngram: int = 5, seed: int = 1) -> tuple[list[dict], dict]:
    """Stage: drop all but the first document of every cluster of LSH candidates."""
    t0 = time.perf_counter()
    perms = permutations(num_perm, seed)
    sigs = np.stack([minhash_signature(d["text"], perms, ngram) for d in docs]) if docs else \
        np.zeros((0, num_perm), dtype=np.uint64)
    pairs = candidate_pairs(sigs, bands, rows)
    drop = clusters_to_drop(len(docs), pairs)
    out = [d for i, d in enumerate(docs) if i not in drop]
    return out, stage_stats(docs, out, t0, candidate_pairs=len(pairs))
