"""One SSL context shared by every HTTP client the app makes (services/tls.py).

The clients are the real ones (httpx, and httpx inside `ollama`); the TLS peer is the
loopback HTTP server wrapped in a real TLS layer, with a CA and a certificate made here.
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import datetime as dt
import ipaddress
import ssl
from pathlib import Path

import certifi
import httpx
import pytest
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

from aiconsole.demo.httpserver import LoopbackHttpServer, Request, Response
from aiconsole.domain.health import HealthState
from aiconsole.domain.model_server import ModelServer
from aiconsole.domain.secret import Secret
from aiconsole.services.chat_ollama import OllamaChat
from aiconsole.services.chat_openai import OpenAIChat
from aiconsole.services.health import HealthChecker
from aiconsole.services.mlflow_client import MlflowClient
from aiconsole.services.model_library import ModelLibrary
from aiconsole.services.ollama_models import OllamaModels
from aiconsole.services.providers._http import JsonApi
from aiconsole.services.providers.proxmox import ProxmoxProvider
from aiconsole.services.providers.tensordock import TensorDockProvider
from aiconsole.services.tls import ca_file_context, shared_ssl_context

# --- a CA and a certificate for 127.0.0.1 -----------------------------------------------------


class TestCa:
    """A throwaway CA (`ca_pem`, a file to trust) and a server context for 127.0.0.1 it signed."""

    __test__ = False

    def __init__(self, folder: Path, name: str = "aiconsole test CA") -> None:
        now = dt.datetime.now(dt.UTC)
        ca_key = ec.generate_private_key(ec.SECP256R1())
        ca_name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, name)])
        ca = (
            _builder(ca_name, ca_name, ca_key, now)
            .add_extension(x509.BasicConstraints(ca=True, path_length=None), critical=True)
            .add_extension(_usage(cert_sign=True), critical=True)
            .add_extension(x509.SubjectKeyIdentifier.from_public_key(ca_key.public_key()), critical=False)
            .sign(ca_key, hashes.SHA256())
        )
        key = ec.generate_private_key(ec.SECP256R1())
        leaf = (
            _builder(x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "127.0.0.1")]), ca_name, key, now)
            .add_extension(x509.SubjectAlternativeName([x509.IPAddress(ipaddress.ip_address("127.0.0.1"))]), False)
            .add_extension(x509.BasicConstraints(ca=False, path_length=None), critical=True)
            .add_extension(_usage(cert_sign=False), critical=True)
            .add_extension(x509.ExtendedKeyUsage([ExtendedKeyUsageOID.SERVER_AUTH]), critical=False)
            .add_extension(x509.AuthorityKeyIdentifier.from_issuer_public_key(ca_key.public_key()), critical=False)
            .sign(ca_key, hashes.SHA256())
        )
        folder.mkdir(parents=True, exist_ok=True)
        self.ca_pem = folder / "ca.pem"
        self.ca_pem.write_bytes(ca.public_bytes(serialization.Encoding.PEM))
        chain, key_file = folder / "server.pem", folder / "server.key"
        chain.write_bytes(leaf.public_bytes(serialization.Encoding.PEM))
        key_file.write_bytes(
            key.private_bytes(
                serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
            )
        )
        self.server_context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
        self.server_context.load_cert_chain(chain, key_file)


def _builder(subject: x509.Name, issuer: x509.Name, key: ec.EllipticCurvePrivateKey, now: dt.datetime):
    return (
        x509.CertificateBuilder()
        .subject_name(subject)
        .issuer_name(issuer)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - dt.timedelta(hours=1))
        .not_valid_after(now + dt.timedelta(days=1))
    )


def _usage(*, cert_sign: bool) -> x509.KeyUsage:
    return x509.KeyUsage(
        digital_signature=True, content_commitment=False, key_encipherment=False, data_encipherment=False,
        key_agreement=False, key_cert_sign=cert_sign, crl_sign=cert_sign, encipher_only=False, decipher_only=False,
    )  # fmt: skip


class TlsLoopbackServer(LoopbackHttpServer):
    """The loopback HTTP server behind TLS (https://127.0.0.1:PORT)."""

    def __init__(self, handler, context: ssl.SSLContext) -> None:
        super().__init__(handler)
        self._tls = context

    @property
    def url(self) -> str:
        return super().url.replace("http://", "https://", 1)

    async def start(self) -> TlsLoopbackServer:
        self.bind()
        self._server = await asyncio.start_server(self._serve, sock=self._socket, ssl=self._tls)
        return self


async def answer(request: Request) -> Response:
    routes = {
        "/api/tags": {"models": [{"name": "tiny:1b", "model": "tiny:1b", "size": 1, "digest": "d" * 64}]},
        "/v1/models": {"object": "list", "data": [{"id": "served-over-tls"}]},
        "/api/version": {"version": "0.9.0"},
        "/api2/json/anything": {"data": "over tls"},
    }
    if request.path in routes:
        return Response(200, routes[request.path])
    return Response(404, {"error": f"no route for {request.path}"})


@pytest.fixture
def ca(tmp_path: Path) -> TestCa:
    return TestCa(tmp_path / "ca")


@pytest.fixture
def no_tls_env(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("SSL_CERT_FILE", raising=False)
    monkeypatch.delenv("SSL_CERT_DIR", raising=False)


@pytest.fixture
def built_clients(monkeypatch: pytest.MonkeyPatch) -> list[httpx.AsyncClient]:
    """Every httpx.AsyncClient built while the test runs (the real ones, only recorded)."""
    built: list[httpx.AsyncClient] = []
    real_init = httpx.AsyncClient.__init__

    def recording_init(self: httpx.AsyncClient, *args, **kwargs) -> None:
        real_init(self, *args, **kwargs)
        built.append(self)

    monkeypatch.setattr(httpx.AsyncClient, "__init__", recording_init)
    return built


def context_of(client: httpx.AsyncClient) -> ssl.SSLContext:
    """The SSL context the client's connections are made with (httpx -> httpcore's pool)."""
    return client._transport._pool._ssl_context


def trusted_subjects(context: ssl.SSLContext) -> set[str]:
    return {dict(part[0] for part in cert["subject"]).get("commonName", "") for cert in context.get_ca_certs()}


# --- one context, built once ------------------------------------------------------------------


async def test_every_kind_of_client_gets_the_same_context(no_tls_env, built_clients) -> None:
    services = [
        OllamaModels("http://127.0.0.1:1"),  # two clients: lists, and pulls
        OllamaChat("http://127.0.0.1:1"),
        OpenAIChat("http://127.0.0.1:1"),
        MlflowClient("http://127.0.0.1:1", token=Secret("t")),
        HealthChecker(),  # trust_env=False: with no SSL_CERT_* variable, the same trust
        TensorDockProvider("vm-1", Secret("k"), "http://127.0.0.1:1"),
        ProxmoxProvider("https://127.0.0.1:1", "pve", 101, "root@pam!x", Secret("s")),
    ]
    assert len(built_clients) == 8, services
    contexts = {id(context_of(client)) for client in built_clients}
    assert contexts == {id(shared_ssl_context())}
    assert shared_ssl_context(trust_env=False) is shared_ssl_context()
    await asyncio.gather(*(c.aclose() for c in built_clients))


def test_the_context_trusts_what_httpx_trusts_by_default(no_tls_env) -> None:
    mine = shared_ssl_context()
    theirs = httpx.create_ssl_context()
    assert mine.get_ca_certs() == theirs.get_ca_certs() and len(mine.get_ca_certs()) > 50
    assert (mine.verify_mode, mine.check_hostname) == (ssl.CERT_REQUIRED, True)


def test_the_context_is_built_once_even_from_many_threads(tmp_path: Path, monkeypatch, ca: TestCa) -> None:
    monkeypatch.setenv("SSL_CERT_FILE", str(ca.ca_pem))  # a path no other test uses: a fresh entry
    builds = 0
    real_create = httpx.create_ssl_context

    def counting_create(*args, **kwargs):
        nonlocal builds
        builds += 1
        return real_create(*args, **kwargs)

    monkeypatch.setattr(httpx, "create_ssl_context", counting_create)
    with concurrent.futures.ThreadPoolExecutor(8) as pool:
        got = list(pool.map(lambda _: shared_ssl_context(), range(64)))
    assert builds == 1 and all(context is got[0] for context in got)


def test_a_ca_file_gets_one_context_per_path(ca: TestCa) -> None:
    first = ca_file_context(str(ca.ca_pem))
    assert ca_file_context(str(ca.ca_pem)) is first
    assert trusted_subjects(first) == {"aiconsole test CA"}
    with pytest.raises(FileNotFoundError):  # as ssl.create_default_context says it, every time
        ca_file_context(str(ca.ca_pem) + ".missing")
    with pytest.raises(FileNotFoundError):
        ca_file_context(str(ca.ca_pem) + ".missing")


# --- SSL_CERT_FILE / SSL_CERT_DIR: honoured with trust_env, ignored without ---------------------


async def test_ssl_cert_file_is_honoured_where_trust_env_is_on_only(monkeypatch, ca: TestCa, built_clients) -> None:
    monkeypatch.delenv("SSL_CERT_DIR", raising=False)
    monkeypatch.setenv("SSL_CERT_FILE", str(ca.ca_pem))
    mlflow, checker = MlflowClient("http://127.0.0.1:1"), HealthChecker()
    honoured, ignored = context_of(built_clients[0]), context_of(built_clients[1])
    assert trusted_subjects(honoured) == {"aiconsole test CA"}
    assert "aiconsole test CA" not in trusted_subjects(ignored)
    assert ignored.get_ca_certs() == ssl.create_default_context(cafile=certifi.where()).get_ca_certs()
    # Still one context per setting: a second client of each kind shares it.
    again = [MlflowClient("http://127.0.0.1:2"), HealthChecker()]
    assert context_of(built_clients[2]) is honoured and context_of(built_clients[3]) is ignored
    await asyncio.gather(mlflow.aclose(), checker.aclose(), *(c.aclose() for c in again))


def test_ssl_cert_dir_is_used_as_httpx_uses_it(monkeypatch, tmp_path: Path, ca: TestCa) -> None:
    monkeypatch.delenv("SSL_CERT_FILE", raising=False)
    monkeypatch.setenv("SSL_CERT_DIR", str(tmp_path / "ca"))
    context = shared_ssl_context()
    # A CA folder is read when a certificate is checked, so nothing is loaded up front:
    # not certifi's bundle, as httpx does (and unlike trust_env=False).
    assert context.get_ca_certs() == httpx.create_ssl_context().get_ca_certs() == []
    assert len(shared_ssl_context(trust_env=False).get_ca_certs()) > 50
    monkeypatch.setenv("SSL_CERT_FILE", str(ca.ca_pem))  # the file wins over the folder, as in httpx
    assert trusted_subjects(shared_ssl_context()) == {"aiconsole test CA"}


# --- real TLS over loopback -------------------------------------------------------------------


async def test_clients_speak_tls_with_the_shared_context(monkeypatch, ca: TestCa, built_clients) -> None:
    monkeypatch.delenv("SSL_CERT_DIR", raising=False)
    monkeypatch.setenv("SSL_CERT_FILE", str(ca.ca_pem))
    async with TlsLoopbackServer(answer, ca.server_context) as server:
        models = OllamaModels(server.url)
        installed = await models.installed()
        assert [model.name for model in installed] == ["tiny:1b"]

        library = ModelLibrary([ModelServer("box", "localai", "openai")], endpoints=FixedEndpoints(server.url))
        await library.refresh()
        (state,) = library.snapshot().servers
        assert (state.listed, state.error) == (("served-over-tls",), "")

        checker = HealthChecker()  # trust_env=False: SSL_CERT_FILE is not read, certifi does not know this CA
        health = await checker.check("box", "ollama", server.url)
        assert health.state is HealthState.DOWN
        assert health.error == "cannot connect: untrusted TLS certificate (unable to get local issuer certificate)"

        contexts = {id(context_of(client)) for client in built_clients}
        assert contexts == {id(shared_ssl_context()), id(shared_ssl_context(trust_env=False))}
        assert shared_ssl_context() is not shared_ssl_context(trust_env=False)
        await asyncio.gather(models.close(), checker.aclose())


async def test_a_providers_own_ca_file_is_trusted_over_tls(no_tls_env, ca: TestCa) -> None:
    async with TlsLoopbackServer(answer, ca.server_context) as server:
        api = JsonApi(
            "Proxmox", server.url + "/api2/json", auth_headers={}, credential="API token t", secret="s",
            verify=str(ca.ca_pem),
        )  # fmt: skip
        assert await api.request("GET", "/anything", not_found="nothing there") == {"data": "over tls"}
        assert context_of(api._client) is ca_file_context(str(ca.ca_pem))
        await api.aclose()


class FixedEndpoints:
    """Where the model library reaches a service: here, always the TLS server."""

    def __init__(self, url: str) -> None:
        self._url = url

    async def url(self, vm: str, service: str) -> str:
        return self._url
