"""The audit log's Merkle tree (RFC 9162 §2.1) and signed checkpoints.

Proof verification is checked against the transparency-dev/merkle vectors, read in place from
the `shared` folder beside the project; proof generation, the incremental tree and tamper
detection are checked against the recursive definition; checkpoints against forgery.
"""
from __future__ import annotations

import ast
import base64
import hashlib
import json
import random
from datetime import datetime, timedelta, timezone
from pathlib import Path

import pytest

from portal.audit import checkpoint as cp
from portal.audit import merkle
from portal.audit.checkpoint import Checkpoint, CheckpointError
from portal.audit.merkle import (
    EMPTY_ROOT,
    CompactTree,
    ProofError,
    consistency_proof,
    inclusion_proof,
    leaf_hash,
    node_hash,
    root,
    verify_consistency,
    verify_inclusion,
)
from portal.config import ROOT

VECTORS = Path(ROOT).parent / "shared" / "test-vectors" / "merkle" / "testdata"
MISSING = (f"Merkle test vectors not found at {VECTORS}: the `shared` folder must sit beside the "
           f"project folder with test-vectors/merkle/testdata/{{inclusion,consistency}}/")

# The leaves of the RFC 6962 reference tree that the vectors' happy paths are built on.
REFERENCE_ENTRIES = [b"", b"\x00", b"\x10", b"\x20\x21", b"\x30\x31", b"\x40\x41\x42\x43",
                     bytes(range(0x50, 0x58)), bytes(range(0x60, 0x70))]
REFERENCE_LEAVES = [leaf_hash(e) for e in REFERENCE_ENTRIES]


def _vector_params(kind: str) -> list:
    folder = VECTORS / kind
    files = sorted(folder.rglob("*.json")) if folder.is_dir() else []
    if not files:  # a missing folder must fail, not silently parametrize to nothing
        return [pytest.param(None, id=f"{kind}-vectors-missing")]
    return [pytest.param(f, id=str(f.relative_to(VECTORS))) for f in files]


def _load(path: Path | None) -> dict:
    if path is None:
        pytest.fail(MISSING)
    return json.loads(path.read_text())


def _b64(value: str) -> bytes:
    return base64.b64decode(value, validate=True)


def _proof(value: list[str] | None) -> list[bytes]:
    return [_b64(p) for p in value or []]


def _leaves(n: int, seed: int = 0) -> list[bytes]:
    rng = random.Random(seed)
    return [leaf_hash(rng.randbytes(rng.randrange(0, 40))) for _ in range(n)]


# -- the vectors ----------------------------------------------------------------------------------
def test_vector_folders_are_complete():
    """The vectors are present in full: a partly copied folder must not pass as a green run."""
    if not VECTORS.is_dir():
        pytest.fail(MISSING)
    counts = {kind: len(list((VECTORS / kind).rglob("*.json"))) for kind in ("inclusion", "consistency")}
    assert counts == {"inclusion": 98, "consistency": 98}, counts


@pytest.mark.parametrize("path", _vector_params("inclusion"))
def test_inclusion_vector(path):
    """verify_inclusion accepts exactly the inclusion vectors whose wantErr is false."""
    v = _load(path)
    args = (_b64(v["leafHash"]), v["leafIdx"], v["treeSize"], _proof(v["proof"]), _b64(v["root"]))
    if v["wantErr"]:
        with pytest.raises(ProofError):
            verify_inclusion(*args)
    else:
        verify_inclusion(*args)


@pytest.mark.parametrize("path", _vector_params("consistency"))
def test_consistency_vector(path):
    """verify_consistency accepts exactly the consistency vectors whose wantErr is false."""
    v = _load(path)
    args = (v["size1"], v["size2"], _b64(v["root1"]), _b64(v["root2"]), _proof(v["proof"]))
    if v["wantErr"]:
        with pytest.raises(ProofError):
            verify_consistency(*args)
    else:
        verify_consistency(*args)


def test_generated_proofs_equal_the_vectors_happy_paths():
    """Over the RFC 6962 reference leaves, root() and the proof generators reproduce every
    happy-path vector byte for byte (not merely something that verifies)."""
    happy = sorted(VECTORS.glob("*/[0-9]/happy-path.json"))
    if not happy:
        pytest.fail(MISSING)
    for path in happy:
        v = json.loads(path.read_text())
        if "leafIdx" in v:
            tree = REFERENCE_LEAVES[:v["treeSize"]]
            assert root(tree) == _b64(v["root"]), path
            assert tree[v["leafIdx"]] == _b64(v["leafHash"]), path
            assert inclusion_proof(tree, v["leafIdx"]) == _proof(v["proof"]), path
        else:
            tree = REFERENCE_LEAVES[:v["size2"]]
            assert root(tree[:v["size1"]]) == _b64(v["root1"]), path
            assert root(tree) == _b64(v["root2"]), path
            assert consistency_proof(tree, v["size1"]) == _proof(v["proof"]), path


# -- hashing and the tree -------------------------------------------------------------------------
def test_hashes_are_domain_separated():
    """Leaf = SHA-256(0x00 || entry), node = SHA-256(0x01 || l || r), empty tree = SHA-256("")."""
    assert leaf_hash(b"abc") == hashlib.sha256(b"\x00abc").digest()
    assert node_hash(b"L" * 32, b"R" * 32) == hashlib.sha256(b"\x01" + b"L" * 32 + b"R" * 32).digest()
    assert EMPTY_ROOT == hashlib.sha256(b"").digest() == root([])
    a, b = leaf_hash(b"a"), leaf_hash(b"b")
    assert leaf_hash(a + b) != node_hash(a, b)  # a leaf can never pass for an inner node


def test_root_splits_at_the_largest_power_of_two_below_n():
    """MTH(D_n) = HASH(0x01 || MTH(D[0:k]) || MTH(D[k:n])), k the largest power of two < n."""
    d = _leaves(7)
    assert root(d[:1]) == d[0]
    assert root(d[:3]) == node_hash(node_hash(d[0], d[1]), d[2])
    left = node_hash(node_hash(d[0], d[1]), node_hash(d[2], d[3]))
    assert root(d) == node_hash(left, node_hash(node_hash(d[4], d[5]), d[6]))


def test_generated_inclusion_proofs_verify_for_every_index_up_to_33():
    """For every n <= 33 and index < n, inclusion_proof verifies against root(); the same proof
    fails for the neighbouring index, another leaf, or a tree one larger."""
    leaves = _leaves(34)
    for n in range(1, 34):
        tree, r = leaves[:n], root(leaves[:n])
        for i in range(n):
            proof = inclusion_proof(tree, i)
            assert len(proof) <= (n - 1).bit_length()
            verify_inclusion(tree[i], i, n, proof, r)
            with pytest.raises(ProofError):
                verify_inclusion(leaves[33], i, n, proof, r)
            with pytest.raises(ProofError):
                verify_inclusion(tree[i], i, n + 1, proof, root(leaves[:n + 1]))
            if n > 1:
                with pytest.raises(ProofError):
                    verify_inclusion(tree[i], (i + 1) % n, n, proof, r)


def test_generated_consistency_proofs_verify_for_every_size_pair_up_to_33():
    """For every 0 < m <= n <= 33, consistency_proof(D_n, m) verifies root(D_m) -> root(D_n) and
    fails with the roots swapped or the old root of another tree."""
    leaves = _leaves(33)
    other = _leaves(33, seed=1)
    roots = [root(leaves[:n]) for n in range(34)]
    for n in range(1, 34):
        for m in range(1, n + 1):
            proof = consistency_proof(leaves[:n], m)
            assert (proof == []) == (m == n)
            verify_consistency(m, n, roots[m], roots[n], proof)
            if m < n:
                with pytest.raises(ProofError):
                    verify_consistency(m, n, roots[n], roots[m], proof)
                with pytest.raises(ProofError):
                    verify_consistency(m, n, root(other[:m]), roots[n], proof)


def test_every_altered_proof_fails():
    """Flipping a bit in, dropping, duplicating or appending any proof element makes it fail."""
    leaves = _leaves(21)
    for n in (5, 8, 13, 21):
        tree, r = leaves[:n], root(leaves[:n])
        cases = [("incl", i, inclusion_proof(tree, i)) for i in range(n)]
        cases += [("cons", m, consistency_proof(tree, m)) for m in range(1, n)]
        for kind, x, proof in cases:
            def check(p, kind=kind, x=x):
                if kind == "incl":
                    verify_inclusion(tree[x], x, n, p, r)
                else:
                    verify_consistency(x, n, root(tree[:x]), r, p)
            check(proof)
            variants = [proof + [proof[-1]], proof + [EMPTY_ROOT], [EMPTY_ROOT] + proof]
            for j in range(len(proof)):
                flipped = bytes([proof[j][0] ^ 1]) + proof[j][1:]
                variants += [proof[:j] + [flipped] + proof[j + 1:], proof[:j] + proof[j + 1:]]
            for bad in variants:
                with pytest.raises(ProofError):
                    check(bad)


def test_impossible_arguments_are_proof_errors():
    """Index >= size, size1 > size2, size1 == 0, negative sizes and short hashes raise ProofError."""
    d = _leaves(4)
    r = root(d)
    for args in [(d[0], 4, 4, [], r), (d[0], -1, 4, [], r), (d[0], 0, 0, [], EMPTY_ROOT),
                 (d[0][:31], 0, 1, [], d[0]), (d[0], 0, 2, [d[1][:31]], root(d[:2]))]:
        with pytest.raises(ProofError):
            verify_inclusion(*args)
    for args in [(4, 3, r, root(d[:3]), []), (0, 4, EMPTY_ROOT, r, []), (0, 0, EMPTY_ROOT, EMPTY_ROOT, []),
                 (-1, 4, r, r, []), (4, 4, r, r, [r]), (2, 4, root(d[:2]), r, [])]:
        with pytest.raises(ProofError):
            verify_consistency(*args)
    with pytest.raises(ValueError):
        inclusion_proof(d, 4)
    with pytest.raises(ValueError):
        consistency_proof(d, 0)


def test_compact_tree_equals_root_for_every_size_up_to_200():
    """CompactTree fed leaf by leaf gives root(leaves[:n]) at every n <= 200, keeping one subtree
    root per set bit of n; resuming from (size, hashes) continues identically."""
    leaves = _leaves(200, seed=7)
    tree = CompactTree()
    assert tree.size == 0 and tree.root() == EMPTY_ROOT
    for n, h in enumerate(leaves, start=1):
        tree.append(h)
        assert tree.size == n
        assert len(tree.hashes) == n.bit_count()
        assert tree.root() == root(leaves[:n]), n
        if n in (1, 63, 64, 100):
            resumed = CompactTree(tree.size, tree.hashes)
            resumed.extend(leaves[n:])
            assert resumed.root() == root(leaves)
    with pytest.raises(ValueError):
        CompactTree(3, tree.hashes[:1])  # size 3 needs two subtree roots


def test_compact_tree_streams_without_holding_the_leaves():
    """A generator of 2**16 + 37 leaves streams through CompactTree in O(log n) state and gives the
    same root as the recursive definition over the full list."""
    n = 2**16 + 37

    def stream():
        for i in range(n):
            yield leaf_hash(i.to_bytes(4, "big"))

    tree = CompactTree.from_leaves(stream())
    assert tree.size == n and len(tree.hashes) == n.bit_count() == 4
    assert tree.root() == root(list(stream()))


# -- tamper evidence ------------------------------------------------------------------------------
ENTRIES = [f"audit event {i}".encode() for i in range(50)]
CHECKPOINT_SIZE = 40  # the last published checkpoint; the log has grown to 50 since


def _tampered() -> dict[str, list[bytes]]:
    e = ENTRIES
    return {
        "change": e[:3] + [b"audit event 3 (edited)"] + e[4:],
        "delete": e[:3] + e[4:],
        "insert": e[:3] + [b"forged event"] + e[3:],
        "reorder": e[:3] + [e[4], e[3]] + e[5:],
        "truncate": e[:35],
        "rewrite-tail-of-checkpoint": e[:39] + [b"audit event 39 (edited)"] + e[40:],
    }


@pytest.mark.parametrize("how", list(_tampered()))
def test_tampering_changes_the_root_and_breaks_consistency(how):
    """Changing, deleting, inserting, reordering or truncating entries covered by a checkpoint
    changes the root, and no consistency proof from that checkpoint verifies against the
    tampered tree (neither the honest old proof nor one generated from the tampered leaves)."""
    honest = [leaf_hash(x) for x in ENTRIES]
    old_root = root(honest[:CHECKPOINT_SIZE])
    honest_proof = consistency_proof(honest, CHECKPOINT_SIZE)
    verify_consistency(CHECKPOINT_SIZE, len(honest), old_root, root(honest), honest_proof)

    forged = [leaf_hash(x) for x in _tampered()[how]]
    assert root(forged) != root(honest)
    assert CompactTree.from_leaves(forged).root() == root(forged)
    candidates = [honest_proof]
    if len(forged) >= CHECKPOINT_SIZE:
        candidates.append(consistency_proof(forged, CHECKPOINT_SIZE))
    for proof in candidates:
        with pytest.raises(ProofError):
            verify_consistency(CHECKPOINT_SIZE, len(forged), old_root, root(forged), proof)


def test_tampered_entry_fails_its_inclusion_proof():
    """An edited entry has no inclusion proof against the checkpoint root, whichever tree the
    proof is generated from."""
    honest = [leaf_hash(x) for x in ENTRIES[:CHECKPOINT_SIZE]]
    forged = list(honest)
    forged[3] = leaf_hash(b"audit event 3 (edited)")
    for proof in (inclusion_proof(honest, 3), inclusion_proof(forged, 3)):
        with pytest.raises(ProofError):
            verify_inclusion(forged[3], 3, CHECKPOINT_SIZE, proof, root(honest))


def test_entries_after_the_latest_checkpoint_are_not_yet_covered():
    """The limit of the guarantee: entries appended after the latest checkpoint can still be
    rewritten consistently with it; only the next checkpoint commits to them."""
    honest = [leaf_hash(x) for x in ENTRIES]
    forged = honest[:CHECKPOINT_SIZE] + [leaf_hash(b"rewritten")] * (len(ENTRIES) - CHECKPOINT_SIZE)
    verify_consistency(CHECKPOINT_SIZE, len(forged), root(honest[:CHECKPOINT_SIZE]), root(forged),
                       consistency_proof(forged, CHECKPOINT_SIZE))


# -- checkpoints ----------------------------------------------------------------------------------
ORIGIN = "peace-portal.example/audit"
WHEN = datetime(2025, 3, 14, 9, 26, 53, tzinfo=timezone.utc)


@pytest.fixture(scope="module")
def key():
    return cp.generate_private_key()


def _checkpoint(size: int = 40) -> Checkpoint:
    return Checkpoint(ORIGIN, size, root([leaf_hash(x) for x in ENTRIES[:size]]), WHEN)


def test_checkpoint_text_is_canonical_and_round_trips(key):
    """sign() writes origin, size, base64 root and UTC time, an empty line and one signature line
    '— name base64(key_id || sig)'; parse_signed() with the public key returns the checkpoint."""
    c = _checkpoint()
    text = cp.sign(c, key)
    lines = text.split("\n")
    assert lines[:5] == [ORIGIN, "40", base64.b64encode(c.root).decode(), "2025-03-14T09:26:53Z", ""]
    assert lines[5].startswith(f"\u2014 {ORIGIN} ") and lines[6:] == [""]
    blob = base64.b64decode(lines[5].rsplit(" ", 1)[1])
    raw = key.public_key().public_bytes_raw()
    assert blob[:4] == cp.key_id(key.public_key()) == hashlib.sha256(raw).digest()[:4]
    assert len(blob) == 4 + 64
    assert cp.parse_signed(text, key.public_key()) == c
    assert cp.parse_signed(text, key.public_key(), key_name=ORIGIN) == c
    assert cp.parse_body(c.body()) == c


def test_checkpoint_timestamps_are_utc_with_z(key):
    """Any aware timestamp is stored as UTC and written with Z (microseconds only when non-zero);
    a naive one is refused."""
    local = datetime(2025, 3, 14, 11, 26, 53, 120000, tzinfo=timezone(timedelta(hours=2)))
    c = Checkpoint(ORIGIN, 1, b"\x11" * 32, local)
    assert c.timestamp.tzinfo == timezone.utc
    assert c.body().split("\n")[3] == "2025-03-14T09:26:53.120000Z"
    assert cp.parse_signed(cp.sign(c, key), key.public_key()) == c
    with pytest.raises(CheckpointError):
        Checkpoint(ORIGIN, 1, b"\x11" * 32, datetime(2025, 3, 14))


def test_checkpoint_from_another_key_fails(key):
    """A checkpoint signed by another key, or named differently than expected, is refused."""
    text = cp.sign(_checkpoint(), key)
    with pytest.raises(CheckpointError, match="not signed by this key"):
        cp.parse_signed(text, cp.generate_private_key().public_key())
    with pytest.raises(CheckpointError):
        cp.parse_signed(text, key.public_key(), key_name="someone-else")


@pytest.mark.parametrize("line,new", [(0, "evil.example/audit"), (1, "41"), (1, "39"),
                                      (2, base64.b64encode(b"\x00" * 32).decode()),
                                      (3, "2025-03-14T09:26:54Z")])
def test_edited_checkpoint_fails(key, line, new):
    """Editing the origin, size, root or timestamp of a signed checkpoint breaks its signature."""
    lines = cp.sign(_checkpoint(), key).split("\n")
    lines[line] = new
    with pytest.raises(CheckpointError, match="does not verify"):
        cp.parse_signed("\n".join(lines), key.public_key())


def test_forged_or_malformed_signed_text_fails(key):
    """A changed signature, a missing one, stray whitespace, CRLF, non-canonical numbers, base64 or
    time, a wrong-length root and extra lines are all refused."""
    text = cp.sign(_checkpoint(), key)
    body, sig = text.split("\n\n")
    name, blob = sig.rstrip("\n").split(" ")[1:]
    raw = base64.b64decode(blob)
    flipped = base64.b64encode(raw[:-1] + bytes([raw[-1] ^ 1])).decode()
    size_line = body.split("\n")[1]
    bad = [
        text.replace(blob, flipped),
        body + "\n",
        body + "\n\n",
        text + "\n",
        text + "\u2014 extra\n",
        text.replace("\n", "\r\n"),
        text.replace(f"\n{size_line}\n", f"\n0{size_line}\n", 1),
        text.replace(f"\n{size_line}\n", f"\n+{size_line}\n", 1),
        text.replace("09:26:53Z", "09:26:53+00:00"),
        text.replace("09:26:53Z", "09:26:53.000000Z"),
        text.replace(ORIGIN, ORIGIN + " ", 1),
        text.replace(blob, blob.rstrip("=")),
        text.replace(base64.b64encode(_checkpoint().root).decode(), base64.b64encode(b"x" * 31).decode()),
        text.replace(f"\u2014 {name}", f"- {name}"),
        "",
    ]
    for forged in bad:
        with pytest.raises(CheckpointError):
            cp.parse_signed(forged, key.public_key())


def test_cosignatures_of_other_keys_are_ignored_but_ours_is_required(key):
    """Signature lines of unknown keys (cosigners) do not matter; the verifying key's must be
    present and valid."""
    c = _checkpoint()
    witness = cp.generate_private_key()
    ours, theirs = cp.sign(c, key), cp.sign(c, witness, key_name="witness.example")
    both = ours + theirs.split("\n\n")[1]
    assert cp.parse_signed(both, key.public_key()) == c
    assert cp.parse_signed(both, witness.public_key()) == c


def test_keys_load_from_pem_and_raw_files(key, tmp_path):
    """load_private_key reads PKCS#8 PEM or a raw 32-byte seed; public_key_pem round-trips."""
    pem, raw = tmp_path / "audit.pem", tmp_path / "audit.key"
    pem.write_text(cp.private_key_pem(key))
    raw.write_bytes(key.private_bytes_raw())
    text = cp.sign(_checkpoint(), key)
    public = cp.load_public_key(cp.public_key_pem(key))
    for path in (pem, raw):
        loaded = cp.load_private_key(str(path))
        assert cp.public_key_pem(loaded) == cp.public_key_pem(key)
        assert cp.parse_signed(cp.sign(_checkpoint(), loaded), public) == _checkpoint()
    assert cp.parse_signed(text, public) == _checkpoint()
    junk = tmp_path / "junk"
    junk.write_bytes(b"not a key")
    with pytest.raises(CheckpointError):
        cp.load_private_key(str(junk))


def test_core_modules_are_pure():
    """merkle.py and checkpoint.py import neither Flask, SQLAlchemy nor other portal modules."""
    for module in (merkle, cp):
        tree = ast.parse(Path(module.__file__).read_text())
        names = {a.name for n in ast.walk(tree) if isinstance(n, ast.Import) for a in n.names}
        names |= {n.module or "" for n in ast.walk(tree) if isinstance(n, ast.ImportFrom)}
        names |= {"." for n in ast.walk(tree) if isinstance(n, ast.ImportFrom) and n.level}
        assert not {x for x in names if x.startswith(("flask", "sqlalchemy", "portal", "."))}, names
