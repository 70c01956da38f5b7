"""The tests' own SSM2 peer: stomp.py 4.1.x (what the Python SSM 4.0 runs on) and the openssl
smime command line. Written for the tests, not taken from the Python SSM.

  ssm2peer.py send CONFIG   -- CONFIG lines: key=value (host, port, login, passcode, dest,
                               delay_ms) then `msg <seal> <id|-> <file>` lines, seal one of
                               raw | sign:<cert>:<key> | encrypt:<cert>:<key>:<to>:<cipher>
  ssm2peer.py recv CONFIG   -- host, port, login, passcode, dest, capath, recip_cert,
                               recip_key (optional), expect, timeout_s, idle_s, out, ready
Send: one SEND per message with `receipt` and `empa-id`, waiting for its RECEIPT (one in
flight, as the Python sender). Prints `sent <id>` per receipted message.
Recv: SUBSCRIBE ack=client-individual, decrypt when the body says pkcs7-mime, verify the
signature, then the chain against capath, write `<empaid>\t<signer>\t<base64 body>` (or
`<empaid>\tERROR\t<reason>`) to `out`, then ACK. Exits after `expect` messages and `idle_s`
quiet seconds (to see extras), or at `timeout_s`.
"""
import base64
import os
import subprocess
import sys
import tempfile
import threading
import time

import stomp


def conf(path):
    kv, msgs = {}, []
    with open(path) as f:
        for line in f:
            line = line.rstrip("\n")
            if line.startswith("msg "):
                _, seal, mid, file = line.split(" ", 3)
                msgs.append((seal, None if mid == "-" else mid, file))
            elif "=" in line:
                k, v = line.split("=", 1)
                kv[k] = v
    return kv, msgs


def openssl(args, data):
    p = subprocess.run(["openssl"] + args, input=data, stdout=subprocess.PIPE,
                       stderr=subprocess.PIPE)
    if p.returncode != 0:
        raise RuntimeError("openssl %s: %s" % (" ".join(args), p.stderr.decode("utf-8", "replace")))
    return p.stdout


def seal(spec, body):
    kind, _, rest = spec.partition(":")
    if kind == "raw":
        return body
    parts = rest.split(":")
    signed = openssl(["smime", "-sign", "-inkey", parts[1], "-signer", parts[0], "-text"], body)
    if kind == "sign":
        return signed
    return openssl(["smime", "-encrypt", "-" + parts[3], parts[2]], signed)


def connect(kv, listener):
    conn = stomp.Connection([(kv["host"], int(kv["port"]))], auto_decode=False, timeout=30)
    conn.set_listener("peer", listener)
    if kv.get("login"):
        conn.connect(kv["login"], kv.get("passcode", ""), wait=True)
    else:
        conn.connect(wait=True)
    return conn


class Sender(stomp.ConnectionListener):
    def __init__(self):
        self.cv = threading.Condition()
        self.receipts = set()
        self.error = None

    def on_receipt(self, headers, body):
        with self.cv:
            self.receipts.add(headers.get("receipt-id"))
            self.cv.notify_all()

    def on_error(self, headers, body):
        with self.cv:
            self.error = "%s %r" % (headers, body)
            self.cv.notify_all()


def send(kv, msgs):
    listener = Sender()
    conn = connect(kv, listener)
    delay = int(kv.get("delay_ms", "0")) / 1000.0
    for n, (spec, mid, file) in enumerate(msgs):
        with open(file, "rb") as f:
            body = seal(spec, f.read())
        receipt = "r%d-%s" % (n, mid or "noid")
        headers = {"receipt": receipt}
        if mid is not None:
            headers["empa-id"] = mid
        conn.send(kv["dest"], body, headers=headers)
        deadline = time.time() + 30
        with listener.cv:
            while receipt not in listener.receipts:
                if listener.error:
                    sys.exit("broker error: " + listener.error)
                left = deadline - time.time()
                if left <= 0:
                    sys.exit("no receipt for " + receipt)
                listener.cv.wait(left)
        print("sent %s" % (mid or "-"), flush=True)
        if delay:
            time.sleep(delay)
    conn.disconnect()


class Receiver(stomp.ConnectionListener):
    def __init__(self, kv, out):
        self.kv, self.out = kv, out
        self.count = 0
        self.last = time.time()
        self.conn = None
        self.lock = threading.Lock()

    def on_message(self, headers, body):
        empaid = headers.get("empa-id", "noid")
        if isinstance(empaid, bytes):
            empaid = empaid.decode()
        try:
            line = "%s\t%s\t%s\n" % ((empaid,) + self.open(body))
        except Exception as e:  # recorded, the test decides
            line = "%s\tERROR\t%s\n" % (empaid, str(e).replace("\n", " ").replace("\t", " "))
        with self.lock:
            self.out.write(line)
            self.out.flush()
            os.fsync(self.out.fileno())
            self.count += 1
            self.last = time.time()
        self.conn.ack(headers["message-id"], headers["subscription"])

    def open(self, body):
        kv = self.kv
        if b"application/pkcs7-mime" in body or b"application/x-pkcs7-mime" in body:
            body = openssl(["smime", "-decrypt", "-recip", kv["recip_cert"], "-inkey",
                            kv["recip_key"]], body)
        with tempfile.NamedTemporaryFile() as signer:
            # As the Python receiver: the signature with -noverify, then the chain with
            # `openssl verify` (which checks no certificate purpose).
            content = openssl(["smime", "-verify", "-CApath", kv["capath"], "-noverify",
                               "-text", "-signer", signer.name], body)
            openssl(["verify", "-CApath", kv["capath"], signer.name], b"")
            subject = openssl(["x509", "-noout", "-subject", "-nameopt", "compat", "-in",
                               signer.name], b"").decode().strip()
        dn = subject.split("=", 1)[1].strip()
        # The signed text travels in canonical form (CRLF line ends) and `openssl smime
        # -verify -text` gives it back so; the sender's text had LF.
        content = content.replace(b"\r\n", b"\n")
        return dn, base64.b64encode(content).decode()


def recv(kv):
    out = open(kv["out"], "a")
    listener = Receiver(kv, out)
    conn = connect(kv, listener)
    listener.conn = conn
    conn.subscribe(destination=kv["dest"], id="1", ack="client-individual")
    # A receipt on a throwaway frame tells that the subscription is in place.
    open(kv["ready"], "w").close()
    expect, idle = int(kv["expect"]), float(kv.get("idle_s", "1"))
    deadline = time.time() + float(kv["timeout_s"])
    while time.time() < deadline:
        with listener.lock:
            if listener.count >= expect and time.time() - listener.last >= idle:
                break
        time.sleep(0.05)
    conn.disconnect()
    out.close()


if __name__ == "__main__":
    mode, path = sys.argv[1], sys.argv[2]
    kv, msgs = conf(path)
    if mode == "send":
        send(kv, msgs)
    else:
        recv(kv)
