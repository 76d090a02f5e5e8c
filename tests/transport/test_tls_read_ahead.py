"""The clients' TLS sockets over a real TLS session (the project's PKI, a socket pair): paho's
small reads are served from whole records, ``pending`` counts what is buffered, and the context
still checks the server's certificate and host name."""
from __future__ import annotations

import os
import random
import socket
import ssl
import threading

import pytest

from appliance.broker.pki import ProjectPKI
from appliance.transport.tls_read_ahead import RECORD_BYTES, ReadAheadSocket, client_context


@pytest.fixture(scope="module")
def pki(tmp_path_factory):
    made = ProjectPKI(tmp_path_factory.mktemp("pki"))
    made.create_ca()
    made.issue_server("server", ("localhost",))
    made.issue_client("door-a", "device")
    return made


def _pair(pki: ProjectPKI, host: str = "localhost") -> tuple[ssl.SSLSocket, ssl.SSLSocket]:
    """(client, server) after a mutual TLS handshake over a socket pair."""
    server_context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH, cafile=str(pki.ca_cert))
    server_context.load_cert_chain(str(pki.folder / "server.crt"), str(pki.folder / "server.key"))
    server_context.verify_mode = ssl.CERT_REQUIRED
    left, right = socket.socketpair()
    client = client_context(pki.ca_cert, pki.cert("door-a"), pki.key("door-a")).wrap_socket(
        left, server_hostname=host, do_handshake_on_connect=False)
    server = server_context.wrap_socket(right, server_side=True, do_handshake_on_connect=False)
    failures: list[BaseException] = []

    def shake() -> None:
        try:
            server.do_handshake()
        except (ssl.SSLError, OSError) as exc:
            failures.append(exc)

    thread = threading.Thread(target=shake)
    thread.start()
    try:
        client.do_handshake()
    finally:
        thread.join(10)
    if failures:
        client.close()
        server.close()
        raise failures[0]
    return client, server


def test_a_packet_read_in_small_pieces_comes_from_one_record(pki):
    client, server = _pair(pki)
    with client, server:
        assert isinstance(client, ReadAheadSocket)
        packet = bytes([0x30, 0x96, 0x17]) + os.urandom(2_966)  # a PUBLISH: command, length, body
        server.sendall(packet + b"\xe0\x00")  # and a DISCONNECT behind it in the same record
        assert client.recv(1) == packet[:1]  # paho's command byte: the whole record is read here
        assert client.pending() == len(packet) + 1
        client.setblocking(False)  # from here nothing may come from the socket
        assert client.recv(1) + client.recv(1) == packet[1:3]
        into = bytearray(100)
        assert client.recv_into(into) == 100 and bytes(into) == packet[3:103]  # the same buffer, not past it
        assert client.recv(len(packet) - 103) == packet[103:]
        assert client.pending() == 2
        assert client.recv(1024) == b"\xe0\x00"  # no more than is buffered, even when more is asked
        assert client.pending() == 0
        with pytest.raises(ssl.SSLWantReadError):
            client.recv(1)


def test_a_stream_longer_than_many_records_arrives_intact_whatever_the_read_sizes(pki):
    client, server = _pair(pki)
    data = os.urandom(RECORD_BYTES * 5 + 123)
    sender = threading.Thread(target=server.sendall, args=(data,))
    with client, server:
        sender.start()
        pick, got = random.Random(7), bytearray()
        while len(got) < len(data):
            piece = client.recv(pick.choice((1, 2, 4, 100, 3_000, RECORD_BYTES, 70_000)))
            assert piece, "the peer closed early"
            got += piece
        sender.join(10)
    assert bytes(got) == data


def test_the_context_still_checks_the_servers_name_and_issuer(pki, tmp_path):
    with pytest.raises(ssl.SSLCertVerificationError):
        _pair(pki, host="broker.example.org")  # a certificate for another host
    stranger = ProjectPKI(tmp_path / "other")
    stranger.create_ca()
    stranger.issue_client("door-a", "device")
    context = client_context(stranger.ca_cert, stranger.cert("door-a"), stranger.key("door-a"))
    assert context.verify_mode == ssl.CERT_REQUIRED and context.check_hostname
    assert context.sslsocket_class is ReadAheadSocket


def _receive(server: ssl.SSLSocket, size: int) -> bytes:
    got = bytearray()
    while len(got) < size:
        piece = server.recv(size - len(got))
        assert piece, "the peer closed early"
        got += piece
    return bytes(got)


def test_gathered_writes_go_out_together_in_order_when_the_block_ends(pki):
    client, server = _pair(pki)
    packets = [bytes([0x30, 40]) + os.urandom(40) for _ in range(50)]  # paho's loop_write: one send each
    with client, server:
        server.setblocking(False)
        with client.gathered_writes():
            for packet in packets:
                assert client.send(packet) == len(packet)  # taken, as paho needs to hear
            with pytest.raises(ssl.SSLWantReadError):
                server.recv(1)  # nothing written yet
        assert not client.unsent()
        server.setblocking(True)
        assert _receive(server, sum(map(len, packets))) == b"".join(packets)
        client.send(b"\xc0\x00")  # outside a block (nothing waits): written at once, as before
        assert _receive(server, 2) == b"\xc0\x00"


def test_what_the_socket_cannot_take_yet_waits_in_order_and_a_sender_is_told_to_wait(pki):
    """A peer that does not read: the rest stays gathered (``unsent``), later sends queue behind
    it up to a bound, then raise want-write (paho keeps its packet); all of it arrives once read."""
    client, server = _pair(pki)
    with client, server:
        client.setblocking(False)
        sent = bytearray()
        with client.gathered_writes():
            while len(sent) < 4 * (1 << 20):  # far more than the socket pair's buffers
                chunk = os.urandom(RECORD_BYTES)
                sent += chunk[:client.send(chunk)]
        assert client.unsent()
        refused = False
        while not refused:
            chunk = os.urandom(1_000)
            try:
                sent += chunk[:client.send(chunk)]
            except ssl.SSLWantWriteError:
                refused = True
        reader = threading.Thread(target=lambda: received.extend(_receive(server, len(sent))))
        received = bytearray()
        reader.start()
        while client.unsent():
            client.flush()
        reader.join(30)
        assert bytes(received) == bytes(sent)


def test_close_sends_what_is_gathered_first(pki):
    """paho closes the socket inside ``loop_write`` right after writing its DISCONNECT."""
    client, server = _pair(pki)
    with server:
        with client.gathered_writes():
            client.send(b"\x30\x03\x00\x01a")
            client.send(b"\xe0\x00")  # DISCONNECT
            client.close()
        assert _receive(server, 7) == b"\x30\x03\x00\x01a\xe0\x00"
