"""Merkle tree of the audit log, as in Certificate Transparency (RFC 9162 §2.1).

Leaves are SHA-256(0x00 || entry) and inner nodes SHA-256(0x01 || left || right), so a leaf can
never pass for a node. The tree over n leaves splits at the largest power of two smaller than n
(§2.1.1). `root` follows that definition over a list of leaf hashes; `CompactTree` computes the
same root incrementally from a stream of leaf hashes, holding only one subtree root per set bit
of the size (at most 64). Proofs are generated from the full list of leaf hashes (§2.1.3.1,
§2.1.4.1) and verified with the RFC's algorithms (§2.1.3.2, §2.1.4.2); a failed verification
raises `ProofError`, never returns False.

Consistency proofs from an empty tree are refused (RFC 9162 defines them only for
0 < size1 <= size2; any tree trivially extends the empty one, so there is nothing to verify and
a caller must treat size 0 on its own). This matches the transparency-dev/merkle test vectors.

Pure functions on bytes: no Flask, SQLAlchemy or portal imports.
"""
from __future__ import annotations

import hashlib
import hmac
from collections.abc import Iterable, Sequence

HASH_SIZE = 32
_LEAF_PREFIX = b"\x00"
_NODE_PREFIX = b"\x01"

EMPTY_ROOT = hashlib.sha256(b"").digest()


class ProofError(Exception):
    """An inclusion or consistency proof does not verify, or its arguments are impossible."""


def leaf_hash(entry: bytes) -> bytes:
    """SHA-256(0x00 || entry): the hash of one log entry."""
    return hashlib.sha256(_LEAF_PREFIX + bytes(entry)).digest()


def node_hash(left: bytes, right: bytes) -> bytes:
    """SHA-256(0x01 || left || right): the hash of an inner node."""
    return hashlib.sha256(_NODE_PREFIX + bytes(left) + bytes(right)).digest()


def _split(n: int) -> int:
    """The largest power of two strictly smaller than n (n >= 2)."""
    return 1 << ((n - 1).bit_length() - 1)


def _mth(leaves: Sequence[bytes], lo: int, hi: int) -> bytes:
    """MTH(D[lo:hi]) for hi > lo, by the recursive definition of RFC 9162 §2.1.1."""
    n = hi - lo
    if n == 1:
        return leaves[lo]
    k = _split(n)
    return node_hash(_mth(leaves, lo, lo + k), _mth(leaves, lo + k, hi))


def _check_leaves(leaf_hashes: Sequence[bytes]) -> None:
    for i, h in enumerate(leaf_hashes):
        if not isinstance(h, bytes | bytearray | memoryview) or len(h) != HASH_SIZE:
            raise ValueError(f"leaf hash {i} is not {HASH_SIZE} bytes")


def root(leaf_hashes: Sequence[bytes]) -> bytes:
    """The Merkle Tree Hash over the given leaf hashes; EMPTY_ROOT for none."""
    _check_leaves(leaf_hashes)
    if not leaf_hashes:
        return EMPTY_ROOT
    return bytes(_mth(leaf_hashes, 0, len(leaf_hashes)))


class CompactTree:
    """Append-only Merkle tree kept as a compact range: the roots of its perfect subtrees.

    A tree of `size` leaves is the left-to-right sequence of perfect subtrees given by the set
    bits of `size`, largest first; their roots are all that is needed to append and to compute
    the root, so memory is O(log n) however many leaves are streamed through `append`.
    `CompactTree(size, hashes)` resumes from a stored `(tree.size, tree.hashes)`.
    """

    __slots__ = ("_size", "_hashes")

    def __init__(self, size: int = 0, hashes: Iterable[bytes] = ()) -> None:
        hashes = [bytes(h) for h in hashes]
        if isinstance(size, bool) or not isinstance(size, int) or size < 0:
            raise ValueError("size must be a non-negative integer")
        if len(hashes) != size.bit_count():
            raise ValueError(f"a tree of size {size} has {size.bit_count()} subtree roots, not {len(hashes)}")
        if any(len(h) != HASH_SIZE for h in hashes):
            raise ValueError(f"subtree roots must be {HASH_SIZE} bytes")
        self._size = size
        self._hashes = hashes

    @classmethod
    def from_leaves(cls, leaf_hashes: Iterable[bytes]) -> CompactTree:
        """A tree holding the given leaf hashes (consumed one at a time)."""
        tree = cls()
        tree.extend(leaf_hashes)
        return tree

    @property
    def size(self) -> int:
        """Number of leaves appended so far."""
        return self._size

    @property
    def hashes(self) -> tuple[bytes, ...]:
        """The subtree roots, largest (leftmost) first: with `size`, the whole state."""
        return tuple(self._hashes)

    def append(self, leaf_hash_: bytes) -> None:
        """Add one leaf hash at the right edge of the tree."""
        h = bytes(leaf_hash_)
        if len(h) != HASH_SIZE:
            raise ValueError(f"leaf hash is not {HASH_SIZE} bytes")
        # Each trailing 1-bit of the old size is a perfect subtree of the new leaf's height:
        # merge with it, as a carry in binary addition.
        n = self._size
        while n & 1:
            h = node_hash(self._hashes.pop(), h)
            n >>= 1
        self._hashes.append(h)
        self._size += 1

    def extend(self, leaf_hashes: Iterable[bytes]) -> None:
        """Append every leaf hash of an iterable, in order."""
        for h in leaf_hashes:
            self.append(h)

    def root(self) -> bytes:
        """The Merkle Tree Hash of the leaves so far (equal to `root(all leaf hashes)`)."""
        if not self._hashes:
            return EMPTY_ROOT
        h = self._hashes[-1]
        for left in reversed(self._hashes[:-1]):
            h = node_hash(left, h)
        return h

    def __repr__(self) -> str:
        return f"CompactTree(size={self._size}, root={self.root().hex()})"


CompactRange = CompactTree


# -- proof generation (RFC 9162 §2.1.3.1, §2.1.4.1) -------------------------------------------
def inclusion_proof(leaf_hashes: Sequence[bytes], index: int) -> list[bytes]:
    """PATH(index, D_n): the audit path of leaf `index`, from the leaf's sibling up to the root."""
    _check_leaves(leaf_hashes)
    n = len(leaf_hashes)
    if isinstance(index, bool) or not isinstance(index, int) or not 0 <= index < n:
        raise ValueError(f"index {index!r} is not in a tree of size {n}")
    path: list[bytes] = []
    lo, hi = 0, n
    while hi - lo > 1:
        k = _split(hi - lo)
        if index < lo + k:
            path.append(_mth(leaf_hashes, lo + k, hi))
            hi = lo + k
        else:
            path.append(_mth(leaf_hashes, lo, lo + k))
            lo = lo + k
    path.reverse()  # collected root-down; the proof lists the lowest sibling first
    return [bytes(h) for h in path]


def consistency_proof(leaf_hashes: Sequence[bytes], size1: int) -> list[bytes]:
    """PROOF(size1, D_n): proves the tree of the first size1 leaves is a prefix of this one.

    Empty when size1 == len(leaf_hashes); size1 must be in 1..len(leaf_hashes).
    """
    _check_leaves(leaf_hashes)
    n = len(leaf_hashes)
    if isinstance(size1, bool) or not isinstance(size1, int) or not 0 < size1 <= n:
        raise ValueError(f"size1 {size1!r} is not in 1..{n}")
    proof: list[bytes] = []
    # SUBPROOF(m, D[lo:hi], b), unrolled: each step records one hash, outermost first.
    m, lo, hi, complete = size1, 0, n, True
    while m != hi - lo:
        k = _split(hi - lo)
        if m <= k:
            proof.append(_mth(leaf_hashes, lo + k, hi))
            hi = lo + k
        else:
            proof.append(_mth(leaf_hashes, lo, lo + k))
            m, lo, complete = m - k, lo + k, False
    if not complete:
        proof.append(_mth(leaf_hashes, lo, hi))
    proof.reverse()
    return [bytes(h) for h in proof]


# -- verification (RFC 9162 §2.1.3.2, §2.1.4.2) -----------------------------------------------
def _as_hash(value: object, what: str) -> bytes:
    if not isinstance(value, bytes | bytearray | memoryview):
        raise ProofError(f"{what} is not bytes")
    value = bytes(value)
    if len(value) != HASH_SIZE:
        raise ProofError(f"{what} is {len(value)} bytes, not {HASH_SIZE}")
    return value


def _as_size(value: object, what: str) -> int:
    if isinstance(value, bool) or not isinstance(value, int) or value < 0:
        raise ProofError(f"{what} must be a non-negative integer, got {value!r}")
    return value


def _same(a: bytes, b: object) -> bool:
    return isinstance(b, bytes | bytearray | memoryview) and hmac.compare_digest(a, bytes(b))


def verify_inclusion(leaf_hash: bytes, index: int, tree_size: int, proof: Sequence[bytes],
                     root: bytes) -> None:
    """Check that `leaf_hash` is leaf `index` of the tree of `tree_size` leaves with `root`.

    Raises ProofError when the index is outside the tree, the proof has too few or too many
    hashes, or the recomputed root differs.
    """
    index = _as_size(index, "index")
    tree_size = _as_size(tree_size, "tree size")
    if index >= tree_size:
        raise ProofError(f"index {index} is not in a tree of size {tree_size}")
    r = _as_hash(leaf_hash, "leaf hash")
    path = [_as_hash(p, f"proof[{i}]") for i, p in enumerate(proof)]
    fn, sn = index, tree_size - 1
    for p in path:
        if sn == 0:
            raise ProofError("inclusion proof has more hashes than the tree has levels")
        if fn & 1 or fn == sn:
            r = node_hash(p, r)
            if not fn & 1:
                while fn and not fn & 1:
                    fn >>= 1
                    sn >>= 1
        else:
            r = node_hash(r, p)
        fn >>= 1
        sn >>= 1
    if sn != 0:
        raise ProofError("inclusion proof has too few hashes")
    if not _same(r, root):
        raise ProofError("inclusion proof does not lead to the root")


def verify_consistency(size1: int, size2: int, root1: bytes, root2: bytes,
                       proof: Sequence[bytes]) -> None:
    """Check that the tree of size1 with root1 is a prefix of the tree of size2 with root2.

    Equal sizes need an empty proof and equal roots. size1 == 0 is refused: a proof from the
    empty tree proves nothing. Raises ProofError on any failure.
    """
    size1 = _as_size(size1, "size1")
    size2 = _as_size(size2, "size2")
    if size1 > size2:
        raise ProofError(f"size1 {size1} is larger than size2 {size2}: a log never shrinks")
    if size1 == 0:
        raise ProofError("a consistency proof from the empty tree proves nothing")
    if size1 == size2:
        if len(proof):
            raise ProofError("equal sizes need an empty consistency proof")
        if not isinstance(root1, bytes | bytearray | memoryview) or not _same(bytes(root1), root2):
            raise ProofError("equal sizes but different roots")
        return
    first = _as_hash(root1, "root1")
    path = [_as_hash(p, f"proof[{i}]") for i, p in enumerate(proof)]
    if not path:
        raise ProofError("empty consistency proof")
    if size1 & (size1 - 1) == 0:  # size1 is a power of two: its root is the first node
        path.insert(0, first)
    fn, sn = size1 - 1, size2 - 1
    while fn & 1:
        fn >>= 1
        sn >>= 1
    fr = sr = path[0]
    for c in path[1:]:
        if sn == 0:
            raise ProofError("consistency proof has more hashes than the tree has levels")
        if fn & 1 or fn == sn:
            fr = node_hash(c, fr)
            sr = node_hash(c, sr)
            if not fn & 1:
                while fn and not fn & 1:
                    fn >>= 1
                    sn >>= 1
        else:
            sr = node_hash(sr, c)
        fn >>= 1
        sn >>= 1
    if sn != 0:
        raise ProofError("consistency proof has too few hashes")
    if not _same(fr, first):
        raise ProofError("consistency proof does not lead to root1")
    if not _same(sr, root2):
        raise ProofError("consistency proof does not lead to root2")
