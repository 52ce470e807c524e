"""Least-privilege IAM policies for the three jobs that touch the backup store.

- backup: write new objects and read them back (listing, manifests, WAL checks); never delete
  or overwrite history. The only deletes allowed are its own lock and health-probe objects.
  Overwrites cannot be forbidden by IAM (PutObject allows both), so the tool writes backup
  objects conditionally (If-None-Match) and bucket versioning keeps any old version; the role
  may not delete versions or change the bucket's versioning, lifecycle or policy.
- restore: read only.
- expire: read, and delete objects under the prefix (versions stay until the lifecycle rule
  expires them after the grace period).
Under Object Lock every role reads retention (a HEAD shows it only then), and backup sets it on
what it writes (s3:PutObjectRetention; without s3:BypassGovernanceRetention, which every role is
denied, a retention can only be lengthened, never shortened).
"""

from __future__ import annotations

from typing import Any

from backup_engine.errors import UsageError

ROLES = ("backup", "restore", "expire")
PROTECTED_BUCKET_ACTIONS = [
    "s3:DeleteObjectVersion",
    "s3:PutBucketVersioning",
    "s3:PutLifecycleConfiguration",
    "s3:PutBucketPolicy",
    "s3:DeleteBucketPolicy",
    "s3:BypassGovernanceRetention",
    "s3:DeleteBucket",
]


def role_policy(role: str, bucket: str, prefix: str) -> dict[str, Any]:
    if role not in ROLES:
        raise UsageError(f"unknown role {role!r}", hint=f"use one of: {', '.join(ROLES)}")
    base = f"arn:aws:s3:::{bucket}"
    objects = f"{base}/{prefix}/*" if prefix else f"{base}/*"
    under = f"{base}/{prefix}/" if prefix else f"{base}/"
    statements: list[dict[str, Any]] = [
        {
            "Sid": "ListTheRepository",
            "Effect": "Allow",
            "Action": ["s3:ListBucket", "s3:GetBucketLocation"],
            "Resource": base,
            **(
                {"Condition": {"StringLike": {"s3:prefix": [prefix, f"{prefix}/*"]}}}
                if prefix
                else {}
            ),
        },
        {
            "Sid": "ReadBackups",
            "Effect": "Allow",
            "Action": ["s3:GetObject", "s3:GetObjectRetention", "s3:GetObjectLegalHold"],
            "Resource": objects,
        },
    ]
    if role == "backup":
        statements += [
            {
                "Sid": "WriteNewBackups",
                "Effect": "Allow",
                "Action": [
                    "s3:PutObject",
                    "s3:PutObjectRetention",
                    "s3:AbortMultipartUpload",
                    "s3:ListMultipartUploadParts",
                ],
                "Resource": objects,
            },
            {
                "Sid": "ReleaseOwnLocksAndProbes",
                "Effect": "Allow",
                "Action": ["s3:DeleteObject"],
                "Resource": [f"{under}locks/*", f"{under}checks/*"],
            },
            {
                "Sid": "NeverRewriteHistory",
                "Effect": "Deny",
                "Action": PROTECTED_BUCKET_ACTIONS,
                "Resource": [base, f"{base}/*"],
            },
        ]
    elif role == "expire":
        statements.append(
            {"Sid": "ExpireOldBackups", "Effect": "Allow", "Action": ["s3:DeleteObject"],
             "Resource": objects}
        )  # fmt: skip
    return {"Version": "2012-10-17", "Statement": statements}
