"""C2PA provenance: signed manifests that mark exported files as AI-generated, with the avatar and its consents.

mp4 and PNG files carry the manifest inside them; a WebVTT transcript cannot, so `X.vtt` gets a sidecar
`X.vtt.c2pa` whose data hash covers the whole transcript. The manifest holds a `c2pa.created` action with
IPTC's digitalSourceType "trainedAlgorithmicMedia", the software that made the file, and an
`org.avatar-service.avatar` assertion naming the avatar and the consent references of the person it shows.

Signing credentials come from AVATAR_C2PA_CERT / AVATAR_C2PA_KEY (and AVATAR_C2PA_CA for verifiers); without
them the first signing creates a local CA and a signing certificate under var/c2pa (AVATAR_C2PA_DIR). There is
no timestamp authority offline, so a manifest validates only while its signing certificate is valid: the local
one lives ten years.
"""
from __future__ import annotations

import datetime
import fcntl
import json
import mimetypes
import os
import sys
import tempfile
from dataclasses import dataclass, field
from importlib.metadata import PackageNotFoundError, version
from pathlib import Path
from typing import Any, BinaryIO

import c2pa
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec, ed25519, rsa
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID
from pydantic_settings import BaseSettings, SettingsConfigDict

from avatar.files import write_atomic
from avatar.types import BUILT_IN_NAME

TRAINED_ALGORITHMIC_MEDIA = "http://cv.iptc.org/newscodes/digitalsourcetype/trainedAlgorithmicMedia"
AVATAR_ASSERTION = "org.avatar-service.avatar"
LOCAL_DIR = Path(__file__).resolve().parents[1] / "var" / "c2pa"
EMBEDDED_FORMATS = {".mp4": "video/mp4", ".png": "image/png"}   # the manifest goes inside the file
SIDECAR_FORMATS = {".vtt": "text/vtt"}                           # the manifest goes into X.c2pa beside it
SPOOL_BYTES = 64 << 20          # a signed file bigger than this is staged on disk, not in memory

# The local CA's files. signer.pem is written last, so its presence means the set is complete.
CA_FILE, KEY_FILE, CHAIN_FILE, LOCK_FILE = "ca.pem", "signer.key", "signer.pem", ".lock"
LOCAL_CA_YEARS, LOCAL_SIGNER_YEARS = 20, 10


def _software() -> str:
    try:
        return f"avatar-service {version('avatar-service')}"
    except PackageNotFoundError:
        return "avatar-service"


@dataclass(frozen=True)
class ContentInfo:
    """What a signed file says about itself: its title, which avatar speaks, and with whose consent."""

    title: str
    avatar_name: str = BUILT_IN_NAME
    consent: tuple[str, ...] = ()       # e.g. "subject: <name>, consent file sha256 <hex>"; none for the built-in
    software: str = field(default_factory=_software)   # "<name> <version>"


class SigningSettings(BaseSettings):
    """Where signing credentials come from. Each PEM value is the PEM text itself or the path of a PEM file."""

    model_config = SettingsConfigDict(env_prefix="AVATAR_C2PA_", frozen=True)

    cert: str | None = None     # certificate chain, signing certificate first
    key: str | None = None      # the signing certificate's private key (PKCS#8)
    ca: str | None = None       # the CA certificate verifiers trust
    dir: Path = LOCAL_DIR       # the local CA, made at first use when cert and key are not set


class CredentialError(ValueError):
    """Signing credentials that are missing, unreadable or do not fit together."""


@dataclass(frozen=True)
class Credentials:
    """A checked signing key with its certificate chain, and the CA to trust when verifying (if known)."""

    chain: bytes                # PEM, signing certificate first
    key: bytes                  # PKCS#8 PEM
    alg: c2pa.C2paSigningAlg
    ca: bytes | None = None


@dataclass
class Verification:
    """The outcome of checking one file's manifest."""

    path: Path
    state: str                          # "Trusted", "Valid" (intact, signer not trusted), "Invalid" or "unsigned"
    signer: str | None = None           # "common name (organisation)" of the signing certificate
    problems: list[str] = field(default_factory=list)
    title: str | None = None
    digital_source_type: str | None = None
    avatar_name: str | None = None
    consent: tuple[str, ...] = ()
    manifest: Path | None = None        # the sidecar read, when the manifest is not inside the file

    @property
    def intact(self) -> bool:
        """The file is as it was signed (whether or not the signer is trusted)."""
        return self.state in ("Trusted", "Valid")

    @property
    def trusted(self) -> bool:
        return self.state == "Trusted"


def sidecar_path(path: Path) -> Path:
    """Where the manifest of a file that cannot hold one is kept: `X.vtt` -> `X.vtt.c2pa`."""
    return path.with_name(path.name + ".c2pa")


def sign_file(path: Path, info: ContentInfo, dest: Path | None = None,
              credentials: Credentials | None = None) -> Path:
    """Sign `path` into `dest` (default: `path` itself), replaced atomically; return the file that holds the
    manifest: `dest` for mp4 and PNG, the sidecar `dest.c2pa` for WebVTT."""
    path = Path(path)
    dest = path if dest is None else Path(dest)
    embedded = path.suffix.lower() in EMBEDDED_FORMATS
    mime = EMBEDDED_FORMATS.get(path.suffix.lower()) or SIDECAR_FORMATS.get(path.suffix.lower())
    if mime is None:
        known = ", ".join(sorted(EMBEDDED_FORMATS | SIDECAR_FORMATS))
        raise ValueError(f"cannot sign {path.name}: C2PA signing supports {known}")
    credentials = credentials or load_credentials()
    signer = c2pa.Signer.from_info(c2pa.C2paSignerInfo(credentials.alg, credentials.chain, credentials.key, None))
    context = c2pa.Context.from_dict(_sdk_settings(credentials.ca))
    with (signer, context, c2pa.Builder(_manifest(info), context=context) as builder, open(path, "rb") as source,
          tempfile.SpooledTemporaryFile(SPOOL_BYTES, dir=dest.parent) as signed):
        if not embedded:
            builder.set_no_embed()
        manifest = builder.sign(signer, mime, source, signed)
        if embedded or dest != path:     # a sidecar format's output is an unchanged copy of the source
            signed.seek(0)
            write_atomic(dest, lambda f: _copy(signed, f))
    if embedded:
        return dest
    write_atomic(sidecar_path(dest), lambda f: f.write(manifest))
    return sidecar_path(dest)


def verify_file(path: Path, ca: Path | None = None) -> Verification:
    """Check the manifest of `path` (for WebVTT, its sidecar). Trust anchors: `ca`, else AVATAR_C2PA_CA, else
    the local CA if one was made."""
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"file not found: {path}")
    anchors = trust_anchors(ca)
    context = c2pa.Context.from_dict(_sdk_settings(anchors))
    sidecar = sidecar_path(path)
    suffix = path.suffix.lower()
    try:
        with context, open(path, "rb") as asset:
            if sidecar.is_file():
                mime = SIDECAR_FORMATS.get(suffix) or mimetypes.guess_type(path.name)[0] or "application/octet-stream"
                reader = c2pa.Reader(mime, asset, sidecar.read_bytes(), context=context)
            elif suffix in SIDECAR_FORMATS:
                return Verification(path, "unsigned", problems=[f"no manifest: {sidecar.name} not found"])
            else:
                reader = c2pa.Reader.try_create(EMBEDDED_FORMATS.get(suffix), asset, None, context=context)
            if reader is None:
                return Verification(path, "unsigned", problems=["no C2PA manifest in the file"])
            with reader:
                report = json.loads(reader.json())
    except c2pa.C2paError.NotSupported as exc:
        return Verification(path, "unsigned", problems=[f"no C2PA manifest can be read from this format ({exc})"])
    except c2pa.C2paError as exc:
        return Verification(path, "Invalid", problems=[str(exc)])
    result = _summarize(path, report)
    result.manifest = sidecar if sidecar.is_file() else None
    return result


def load_credentials(settings: SigningSettings | None = None) -> Credentials:
    """The signing credentials from AVATAR_C2PA_CERT/KEY, else the local CA's (created at first use)."""
    settings = settings or SigningSettings()
    if (settings.cert is None) != (settings.key is None):
        raise CredentialError("set both AVATAR_C2PA_CERT and AVATAR_C2PA_KEY, or neither (for the local CA)")
    if settings.cert is not None and settings.key is not None:
        ca = _read_pem(settings.ca, "AVATAR_C2PA_CA") if settings.ca else None
        return _checked(_read_pem(settings.cert, "AVATAR_C2PA_CERT"), _read_pem(settings.key, "AVATAR_C2PA_KEY"),
                        ca, "AVATAR_C2PA_CERT", "AVATAR_C2PA_KEY")
    return _local_credentials(settings.dir)


def trust_anchors(ca: Path | None = None, settings: SigningSettings | None = None) -> bytes | None:
    """The CA certificate(s) to trust: `ca`, else AVATAR_C2PA_CA, else the local CA if it exists."""
    settings = settings or SigningSettings()
    if ca is not None:
        ca = Path(ca)
        if not ca.is_file():
            raise FileNotFoundError(f"CA certificate not found: {ca}")
        pem, where = ca.read_bytes(), str(ca)
    elif settings.ca:
        pem, where = _read_pem(settings.ca, "AVATAR_C2PA_CA"), "AVATAR_C2PA_CA"
    elif (settings.dir / CA_FILE).is_file():
        pem, where = (settings.dir / CA_FILE).read_bytes(), str(settings.dir / CA_FILE)
    else:
        return None
    _certificates(pem, where)
    return pem


def _manifest(info: ContentInfo) -> dict[str, Any]:
    name, _, release = info.software.rpartition(" ")
    agent = {"name": name, "version": release} if name else {"name": info.software}
    return {
        "title": info.title,
        "claim_generator_info": [agent],
        "assertions": [
            {"label": "c2pa.actions", "data": {"actions": [{
                "action": "c2pa.created", "digitalSourceType": TRAINED_ALGORITHMIC_MEDIA, "softwareAgent": agent}]}},
            {"label": AVATAR_ASSERTION, "data": {"name": info.avatar_name, "consent": list(info.consent)}},
        ],
    }


def _sdk_settings(anchors: bytes | None) -> dict[str, Any]:
    """c2pa settings: nothing fetched over the network; no thumbnails; `anchors` trusted when given."""
    settings: dict[str, Any] = {"verify": {"remote_manifest_fetch": False, "ocsp_fetch": False},
                                "builder": {"thumbnail": {"enabled": False}}}
    if anchors:
        settings["trust"] = {"user_anchors": anchors.decode()}
    return settings


def _summarize(path: Path, report: dict[str, Any]) -> Verification:
    manifest = report.get("manifests", {}).get(report.get("active_manifest") or "", {})
    results = (report.get("validation_results") or {}).get("activeManifest")
    failures = results.get("failure", []) if results else report.get("validation_status") or []
    signature = manifest.get("signature_info", {})
    name, organisation = signature.get("common_name"), signature.get("issuer")   # c2pa's "issuer": the subject's O
    signer = f"{name} ({organisation})" if name and organisation else name or organisation
    found = Verification(path, report.get("validation_state", "Invalid"), signer,
                         [f"{f.get('code')}: {f.get('explanation', '')}" for f in failures], manifest.get("title"))
    for assertion in manifest.get("assertions", []):
        data = assertion.get("data", {})
        if assertion.get("label", "").startswith("c2pa.actions"):
            created = [a for a in data.get("actions", []) if a.get("action") == "c2pa.created"]
            found.digital_source_type = created[0].get("digitalSourceType") if created else None
        elif assertion.get("label") == AVATAR_ASSERTION:
            found.avatar_name = data.get("name")
            found.consent = tuple(data.get("consent", []))
    return found


def _copy(source: Any, dest: Any) -> None:
    while chunk := source.read(1 << 20):
        dest.write(chunk)


def _read_pem(value: str, name: str) -> bytes:
    """`value` is PEM text or the path of a PEM file (named `name` in errors)."""
    if value.lstrip().startswith("-----BEGIN"):
        return value.encode()
    try:
        return Path(value).read_bytes()
    except OSError as exc:
        raise CredentialError(f"{name}: cannot read {value}: {exc.strerror}") from exc


def _certificates(pem: bytes, where: str) -> list[x509.Certificate]:
    try:
        return x509.load_pem_x509_certificates(pem)
    except ValueError as exc:
        raise CredentialError(f"{where} is not a PEM certificate file (corrupt or half-written?): {exc}") from exc


def _checked(chain: bytes, key: bytes, ca: bytes | None, chain_where: str, key_where: str) -> Credentials:
    """Parse and check a chain and key; the key is passed on as PKCS#8, which the c2pa signer needs."""
    certs = _certificates(chain, chain_where)
    try:
        private = serialization.load_pem_private_key(key, password=None)
    except (ValueError, TypeError) as exc:
        raise CredentialError(f"{key_where} is not an unencrypted PEM private key (corrupt or half-written?): "
                              f"{exc}") from exc
    public = serialization.PublicFormat.SubjectPublicKeyInfo
    if (certs[0].public_key().public_bytes(serialization.Encoding.DER, public)
            != private.public_key().public_bytes(serialization.Encoding.DER, public)):
        raise CredentialError(f"the key in {key_where} does not belong to the first certificate in {chain_where}")
    if ca is not None:
        _certificates(ca, "AVATAR_C2PA_CA")
    pkcs8 = private.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
                                  serialization.NoEncryption())
    return Credentials(chain, pkcs8, _algorithm(private, key_where), ca)


def _algorithm(key: Any, where: str) -> c2pa.C2paSigningAlg:
    if isinstance(key, ec.EllipticCurvePrivateKey):
        by_curve = {"secp256r1": c2pa.C2paSigningAlg.ES256, "secp384r1": c2pa.C2paSigningAlg.ES384,
                    "secp521r1": c2pa.C2paSigningAlg.ES512}
        if key.curve.name in by_curve:
            return by_curve[key.curve.name]
    if isinstance(key, rsa.RSAPrivateKey):
        return c2pa.C2paSigningAlg.PS256
    if isinstance(key, ed25519.Ed25519PrivateKey):
        return c2pa.C2paSigningAlg.ED25519
    raise CredentialError(f"{where}: C2PA signs with EC P-256/384/521, RSA or Ed25519 keys, not {type(key).__name__}")


def _local_credentials(directory: Path) -> Credentials:
    """The local CA's signing credentials, created under an exclusive lock the first time."""
    if not (directory / CHAIN_FILE).is_file():
        directory.mkdir(mode=0o700, parents=True, exist_ok=True)
        with open(directory / LOCK_FILE, "a") as lock:
            fcntl.flock(lock, fcntl.LOCK_EX)      # a second process waits here, then finds the set complete
            if not (directory / CHAIN_FILE).is_file():
                _create_local_ca(directory)
                print(f"created a local C2PA signing CA at {directory}; set AVATAR_C2PA_CERT/KEY to use your own",
                      file=sys.stderr)
    files = {name: directory / name for name in (CA_FILE, KEY_FILE, CHAIN_FILE)}
    missing = [str(p) for p in files.values() if not p.is_file()]
    if missing:
        raise CredentialError(f"local C2PA credentials are incomplete, missing {', '.join(missing)}; remove "
                              f"{directory} to create new ones (files signed with the old ones will not be trusted)")
    return _checked(files[CHAIN_FILE].read_bytes(), files[KEY_FILE].read_bytes(), files[CA_FILE].read_bytes(),
                    str(files[CHAIN_FILE]), str(files[KEY_FILE]))


def _create_local_ca(directory: Path) -> None:
    """A CA that signs one signing certificate and is then forgotten (its key is never stored), so nobody can
    issue more certificates in its name."""
    now = datetime.datetime.now(datetime.timezone.utc)
    ca_key, key = ec.generate_private_key(ec.SECP256R1()), ec.generate_private_key(ec.SECP256R1())
    ca_name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "avatar-service local C2PA CA"),
                         x509.NameAttribute(NameOID.ORGANIZATION_NAME, "avatar-service local CA")])
    signer_name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "avatar-service signer"),
                             x509.NameAttribute(NameOID.ORGANIZATION_NAME, "avatar-service")])
    usage = dict(content_commitment=False, key_encipherment=False, data_encipherment=False, key_agreement=False,
                 encipher_only=False, decipher_only=False)
    ca = (_certificate(ca_name, ca_name, ca_key.public_key(), now, LOCAL_CA_YEARS)
          .add_extension(x509.BasicConstraints(ca=True, path_length=0), critical=True)
          .add_extension(x509.KeyUsage(digital_signature=False, key_cert_sign=True, crl_sign=True, **usage),
                         critical=True)
          .sign(ca_key, hashes.SHA256()))
    signer = (_certificate(signer_name, ca_name, key.public_key(), now, LOCAL_SIGNER_YEARS)
              .add_extension(x509.BasicConstraints(ca=False, path_length=None), critical=True)
              .add_extension(x509.KeyUsage(digital_signature=True, key_cert_sign=False, crl_sign=False, **usage),
                             critical=True)
              .add_extension(x509.ExtendedKeyUsage([ExtendedKeyUsageOID.EMAIL_PROTECTION]), critical=False)
              .add_extension(x509.AuthorityKeyIdentifier.from_issuer_public_key(ca_key.public_key()), critical=False)
              .sign(ca_key, hashes.SHA256()))
    pem = serialization.Encoding.PEM
    key_pem = key.private_bytes(pem, serialization.PrivateFormat.PKCS8, serialization.NoEncryption())

    def write_private(f: BinaryIO) -> None:
        os.fchmod(f.fileno(), 0o600)       # before the key is in it
        f.write(key_pem)

    write_atomic(directory / CA_FILE, lambda f: f.write(ca.public_bytes(pem)))
    write_atomic(directory / KEY_FILE, write_private)
    write_atomic(directory / CHAIN_FILE, lambda f: f.write(signer.public_bytes(pem) + ca.public_bytes(pem)))


def _certificate(subject: x509.Name, issuer: x509.Name, public_key: Any, now: datetime.datetime,
                 years: int) -> x509.CertificateBuilder:
    """A v3 certificate valid from a minute ago for `years`, with its subject key identifier."""
    return (x509.CertificateBuilder().subject_name(subject).issuer_name(issuer).public_key(public_key)
            .serial_number(x509.random_serial_number())
            .not_valid_before(now - datetime.timedelta(minutes=1))
            .not_valid_after(now + datetime.timedelta(days=365 * years + years // 4))
            .add_extension(x509.SubjectKeyIdentifier.from_public_key(public_key), critical=False))
