"""Signed checkpoints, verification and inclusion proofs over the log in the database.

The signing key lives in a file outside the database (PORTAL_AUDIT_KEY_FILE; in development a
key generated once under instance/). Only the CLI signs; the web workers never load it. Whoever
can write the database can rewrite the rows and recompute every hash, but cannot sign: a
checkpoint held by a witness outside the database pins what the log said when it was signed.
"""
from __future__ import annotations

import base64
import hmac
import os
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path

from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey, Ed25519PublicKey
from sqlalchemy import select
from sqlalchemy.orm import Session

from portal.audit import checkpoint as cp
from portal.audit import merkle
from portal.audit.log import AuditError, current_tree, head_size, leaf_bytes, leaf_hashes
from portal.models import AuditCheckpoint, AuditEvent

KEY_FILE_NAME = "audit-signing-key.pem"


def signing_key(key_file: str | None, instance_path: Path, production: bool) -> Ed25519PrivateKey:
    """The configured key, or outside production one generated once under instance/."""
    if key_file:
        return cp.load_private_key(key_file)
    if production:
        raise cp.CheckpointError("production requires PORTAL_AUDIT_KEY_FILE")
    path = instance_path / KEY_FILE_NAME
    if not path.exists():
        instance_path.mkdir(parents=True, exist_ok=True)
        key = cp.generate_private_key()
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
        with os.fdopen(fd, "w") as f:
            f.write(cp.private_key_pem(key))
    return cp.load_private_key(path)


def origin_for(base_url: str) -> str:
    """The log's name in its checkpoints: the portal's host and path, then /audit."""
    host = base_url.split("://", 1)[-1].rstrip("/")
    return f"{host}/audit"


def sign_checkpoint(db: Session, key: Ed25519PrivateKey, origin: str, now: datetime) -> tuple[str, cp.Checkpoint]:
    """Sign the log as it stands, keep a copy in the database, and return the signed text.

    The copy is for convenience (verify compares against the latest); it is the witness's copy
    that counts, since whoever edits the database can edit this table too.
    """
    tree = current_tree(db)
    checkpoint = cp.Checkpoint(origin, tree.size, tree.root(), now)
    text = cp.sign(checkpoint, key)
    db.add(AuditCheckpoint(tree_size=tree.size, root_hash=checkpoint.root, signed_at=now, signed_note=text))
    return text, checkpoint


@dataclass
class Verification:
    size: int
    root: bytes
    checked: list[str] = field(default_factory=list)
    problems: list[str] = field(default_factory=list)

    @property
    def ok(self) -> bool:
        return not self.problems


def verify(db: Session, public_key: Ed25519PublicKey, witness_text: str | None = None) -> Verification:
    """Recompute the tree from the rows; check the latest stored checkpoint and the witness's.

    A checkpoint of size m proves the first m events unchanged when the consistency proof from
    (m, its root) to today's tree verifies: an edit, deletion, insertion, reordering or
    truncation among them changes some hash on the path and fails it.
    """
    try:
        hashes = leaf_hashes(db)
        tree = merkle.CompactTree.from_leaves(hashes)
        if (head := head_size(db)) != tree.size:
            raise AuditError(f"the head says {head} events, the table holds {tree.size}")
    except AuditError as error:
        return Verification(size=-1, root=b"", problems=[str(error)])
    result = Verification(size=tree.size, root=tree.root())
    result.checked.append(f"recomputed {tree.size} events, root {result.root.hex()}")

    stored = db.scalars(select(AuditCheckpoint).order_by(AuditCheckpoint.tree_size.desc(),
                                                         AuditCheckpoint.id.desc()).limit(1)).first()
    if stored is not None:
        _check_against(result, hashes, stored.signed_note, public_key, "latest stored checkpoint")
    if witness_text is not None:
        _check_against(result, hashes, witness_text, public_key, "witness checkpoint")
    return result


def _check_against(result: Verification, hashes: list[bytes], text: str, public_key: Ed25519PublicKey,
                   label: str) -> None:
    try:
        old = cp.parse_signed(text, public_key)
    except cp.CheckpointError as error:
        result.problems.append(f"{label}: not a valid signed checkpoint ({error})")
        return
    if old.size > result.size:
        result.problems.append(f"{label}: signed at {old.size} events, the log now holds {result.size}: "
                               "events were removed")
        return
    if old.size == 0:
        if not hmac.compare_digest(old.root, merkle.root([])):
            result.problems.append(f"{label}: size 0 with a root that is not the empty tree's")
        else:
            result.checked.append(f"{label}: empty log, trivially a prefix")
        return
    proof = merkle.consistency_proof(hashes, old.size)
    try:
        merkle.verify_consistency(old.size, result.size, old.root, result.root, proof)
    except merkle.ProofError as error:
        result.problems.append(f"{label} (size {old.size}, signed {cp.format_timestamp(old.timestamp)}): "
                               f"the log does not extend it ({error})")
        return
    result.checked.append(f"{label}: size {old.size} is a prefix of today's log (consistency proof, "
                          f"{len(proof)} hashes)")


def prove(db: Session, seq: int, key: Ed25519PrivateKey, origin: str, now: datetime) -> dict:
    """An inclusion proof of event `seq` in a freshly signed checkpoint; checkable with the public key
    alone (see `check_proof`)."""
    hashes = leaf_hashes(db)
    if not 0 <= seq < len(hashes):
        raise AuditError(f"there is no event {seq} in a log of {len(hashes)} events")
    event = db.get(AuditEvent, seq)
    text, checkpoint = sign_checkpoint(db, key, origin, now)
    return {
        "seq": seq,
        "leaf": leaf_bytes(event).decode("ascii"),
        "tree_size": checkpoint.size,
        "inclusion_proof": [base64.b64encode(h).decode("ascii") for h in merkle.inclusion_proof(hashes, seq)],
        "checkpoint": text,
        "public_key": cp.public_key_pem(key),
    }


def check_proof(proof: dict, public_key: Ed25519PublicKey) -> cp.Checkpoint:
    """Check a proof from `prove` with nothing but the public key; raises on any failure."""
    checkpoint = cp.parse_signed(proof["checkpoint"], public_key)
    if checkpoint.size != proof["tree_size"]:
        raise merkle.ProofError("the proof's tree size is not the checkpoint's")
    path = [base64.b64decode(h, validate=True) for h in proof["inclusion_proof"]]
    merkle.verify_inclusion(merkle.leaf_hash(proof["leaf"].encode("ascii")), proof["seq"], checkpoint.size,
                            path, checkpoint.root)
    return checkpoint
