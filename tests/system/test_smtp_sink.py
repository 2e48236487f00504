"""The SMTP sink of the system tests: it records what smtplib sends, and each fault mode does
what dispatch tests will rely on (transient 421/451, 550 per address, refused connections,
hangs, slowness), in this process and as a separate process."""

from __future__ import annotations

import smtplib
import socket
import threading
import time

import pytest

from tests.system.smtp_sink import SMTPSink, duplicates, read_records


def message(n: int = 1, body: str = "Hello.") -> bytes:
    return (
        f"From: news@eng.example.edu\r\nTo: reader{n}@example.org\r\nSubject: Test {n}\r\n"
        f"Message-ID: <m{n}@eng.example.edu>\r\n\r\n{body}\r\n"
    ).encode()


def connect(sink, timeout: float = 5) -> smtplib.SMTP:
    return smtplib.SMTP(sink.host, sink.port, local_hostname="client.test", timeout=timeout)


def test_it_records_envelope_recipients_raw_bytes_and_message_id(smtp_sink):
    raw = message(1, body="Line one\r\n.leading dot\r\n..two dots\r\n.")
    with connect(smtp_sink) as smtp:
        refused = smtp.sendmail("bounce@eng.example.edu", ["a@example.org", "b@example.org"], raw)
    assert refused == {}
    [received] = smtp_sink.wait_for(1)
    assert received.mail_from == "bounce@eng.example.edu"
    assert received.rcpt_tos == ["a@example.org", "b@example.org"]
    assert received.raw == raw  # dot-stuffing undone, bytes as sent
    assert received.message_id == "<m1@eng.example.edu>"
    assert abs(received.received_at - time.time()) < 5
    # The same records on disk, for other processes.
    [on_disk] = read_records(smtp_sink.directory)
    assert on_disk == received


def test_without_raw_bytes_it_keeps_envelopes_and_message_ids_in_memory(tmp_path):
    with SMTPSink(keep_raw=False, directory=tmp_path) as sink, connect(sink) as smtp:
        smtp.sendmail("bounce@eng.example.edu", ["a@example.org"], message(1))
        [received] = sink.wait_for(1)
    assert received.raw == b"" and received.message_id == "<m1@eng.example.edu>"
    assert read_records(tmp_path)[0].raw == message(1)  # the folder still has the bytes


def test_it_reads_a_folded_message_id_from_the_header_block_only(smtp_sink):
    raw = b"Subject: x\r\nmessage-id:\r\n <folded@eng.example.edu>\r\n\r\nMessage-ID: <body>\r\n"
    with connect(smtp_sink) as smtp:
        smtp.sendmail("bounce@eng.example.edu", ["a@example.org"], raw)
    assert smtp_sink.wait_for(1)[0].message_id == "<folded@eng.example.edu>"


def test_it_counts_duplicates_by_message_id(smtp_sink):
    with connect(smtp_sink) as smtp:
        for n in (1, 2, 1):
            smtp.sendmail("bounce@eng.example.edu", [f"reader{n}@example.org"], message(n))
    smtp_sink.wait_for(3)
    assert duplicates(smtp_sink.messages) == {"<m1@eng.example.edu>": 2}


def test_it_answers_451_at_rcpt_a_given_number_of_times(smtp_sink):
    smtp_sink.transient(451, stage="rcpt", count=2)
    with connect(smtp_sink) as smtp:
        for _ in range(2):
            with pytest.raises(smtplib.SMTPRecipientsRefused) as refused:
                smtp.sendmail("bounce@eng.example.edu", ["a@example.org"], message())
            assert refused.value.recipients["a@example.org"][0] == 451
            smtp.rset()
        smtp.sendmail("bounce@eng.example.edu", ["a@example.org"], message())
    assert len(smtp_sink.wait_for(1)) == 1
    assert smtp_sink.stats["transient"] == 2


def test_it_answers_421_and_closes_the_connection(smtp_sink):
    smtp_sink.transient(421, stage="rcpt", count=1)
    smtp = connect(smtp_sink)
    with pytest.raises(smtplib.SMTPRecipientsRefused) as refused:
        smtp.sendmail("bounce@eng.example.edu", ["a@example.org"], message())
    assert refused.value.recipients["a@example.org"][0] == 421
    with pytest.raises(smtplib.SMTPServerDisconnected):
        smtp.noop()
    with connect(smtp_sink) as smtp:  # a new connection is served again
        smtp.sendmail("bounce@eng.example.edu", ["a@example.org"], message())
    assert len(smtp_sink.wait_for(1)) == 1


def test_it_answers_451_at_the_end_of_data_for_a_while(smtp_sink):
    smtp_sink.transient(451, stage="data", seconds=0.6)
    started = time.monotonic()
    attempts = 0
    with connect(smtp_sink) as smtp:
        while True:
            attempts += 1
            try:
                smtp.sendmail("bounce@eng.example.edu", ["a@example.org"], message())
                break
            except smtplib.SMTPDataError as error:
                assert error.smtp_code == 451
                time.sleep(0.1)
    assert time.monotonic() - started >= 0.5
    assert attempts >= 3
    assert len(smtp_sink.wait_for(1)) == 1  # refused attempts are not recorded


def test_it_rejects_chosen_addresses_with_550_and_accepts_the_rest(smtp_sink):
    smtp_sink.reject("gone@example.org")
    with connect(smtp_sink) as smtp:
        refused = smtp.sendmail(
            "bounce@eng.example.edu", ["Gone@example.org", "here@example.org"], message()
        )
        assert refused["Gone@example.org"][0] == 550
        assert b"User unknown" in refused["Gone@example.org"][1]
        with pytest.raises(smtplib.SMTPRecipientsRefused):
            smtp.sendmail("bounce@eng.example.edu", ["gone@example.org"], message())
    [received] = smtp_sink.wait_for(1)
    assert received.rcpt_tos == ["here@example.org"]


def test_it_refuses_connections_and_then_serves_again_on_the_same_port(smtp_sink):
    with connect(smtp_sink) as open_before:
        smtp_sink.refuse_connections()
        with pytest.raises(ConnectionRefusedError):
            connect(smtp_sink)
        with pytest.raises(smtplib.SMTPServerDisconnected):
            open_before.noop()  # open connections are dropped too
    smtp_sink.refuse_connections(False)
    with connect(smtp_sink) as smtp:
        smtp.sendmail("bounce@eng.example.edu", ["a@example.org"], message())
    assert len(smtp_sink.wait_for(1)) == 1


def test_it_hangs_without_a_greeting_so_the_client_timeout_fires(smtp_sink):
    smtp_sink.hang("connect")
    started = time.monotonic()
    with pytest.raises((smtplib.SMTPServerDisconnected, TimeoutError), match="timed out"):
        connect(smtp_sink, timeout=0.5)
    assert 0.4 < time.monotonic() - started < 5


def test_it_hangs_after_data_so_the_message_is_in_doubt(smtp_sink):
    smtp_sink.hang("data")
    smtp = connect(smtp_sink, timeout=0.5)
    with pytest.raises((smtplib.SMTPServerDisconnected, TimeoutError)):
        smtp.sendmail("bounce@eng.example.edu", ["a@example.org"], message())
    smtp.close()
    assert smtp_sink.messages == []
    assert smtp_sink.stats["unanswered"] == 1
    smtp_sink.reset_faults()
    with connect(smtp_sink) as smtp:
        smtp.sendmail("bounce@eng.example.edu", ["a@example.org"], message())
    assert len(smtp_sink.wait_for(1)) == 1


def test_it_slows_each_message_without_blocking_other_connections(smtp_sink):
    smtp_sink.slow(400)
    errors: list[BaseException] = []

    def send(n: int) -> None:
        try:
            with connect(smtp_sink) as smtp:
                smtp.sendmail("bounce@eng.example.edu", [f"r{n}@example.org"], message(n))
        except BaseException as error:
            errors.append(error)

    started = time.monotonic()
    threads = [threading.Thread(target=send, args=(n,)) for n in range(4)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    elapsed = time.monotonic() - started
    assert not errors
    assert 0.4 <= elapsed < 1.5  # four messages in parallel, not one after another
    assert len(smtp_sink.wait_for(4)) == 4


def test_the_sink_process_records_to_a_folder_and_takes_faults_at_run_time(smtp_sink_process):
    sink = smtp_sink_process
    with connect(sink) as smtp:
        smtp.sendmail("bounce@eng.example.edu", ["a@example.org"], message(1))
    sink.reject("b@example.org")
    with connect(sink) as smtp, pytest.raises(smtplib.SMTPRecipientsRefused):
        smtp.sendmail("bounce@eng.example.edu", ["b@example.org"], message(2))
    sink.refuse_connections()
    with pytest.raises(ConnectionRefusedError):
        connect(sink)
    sink.reset_faults()
    with connect(sink) as smtp:
        smtp.sendmail("bounce@eng.example.edu", ["b@example.org"], message(3))
    records = sink.wait_for(2)
    assert [r.message_id for r in records] == ["<m1@eng.example.edu>", "<m3@eng.example.edu>"]
    assert records[1].raw == message(3)


def test_the_sink_process_hangs_so_the_client_timeout_fires(smtp_sink_process):
    smtp_sink_process.hang("connect")
    with pytest.raises((smtplib.SMTPServerDisconnected, TimeoutError, socket.timeout)):
        connect(smtp_sink_process, timeout=0.5)
