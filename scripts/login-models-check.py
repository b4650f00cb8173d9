#!/usr/bin/env python3
"""Checks the login_differential models (fuzz/src/models.rs) against the real parsers.

    scripts/login-models-check.py [N [SEED]]   # N random bodies (default 3000) + the crafted ones

For every body it compares, byte for byte:
  * the model's PHP $_POST with what `php -S` (php-cli's built-in server, `php -n`: the
    built-in defaults max_input_vars=1000, max_input_nesting_level=64) puts in $_POST for
    that body POSTed as application/x-www-form-urlencoded;
  * the model's parse_str() with `php -r 'parse_str(...)'`;
  * the model's parse_qsl with urllib.parse.parse_qsl(text, keep_blank_values=True,
    max_num_fields=1000) on the text Django makes of the body (UTF-8, else ISO-8859-1);
  * the model's Django request.POST with Django's own WSGIRequest(...).POST.
It compiles fuzz/tools/login_models.rs with plain rustc (the models use only std), prints
the number of bodies and of disagreements per parser, the first few disagreements, and
exits 1 if there is any. Needs php-cli, python3 with Django, rustc.
"""
import http.client
import io
import os
import random
import socket
import subprocess
import sys
import tempfile
import time
import urllib.parse

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))

PHP_ENC = r"""
function enc($v) {
  if (is_array($v)) {
    $o = "A{"; $f = true;
    foreach ($v as $k => $x) { if (!$f) $o .= ","; $f = false; $o .= bin2hex((string)$k) . ":" . enc($x); }
    return $o . "}";
  }
  return "S" . bin2hex($v);
}
"""

TOKENS = [
    "&", "&", "&", "=", "=", "+", "%", "[", "]", "[]", ".", " ", "\t", "\x00", "%00", "%20",
    "%2E", "%2e", "%5B", "%5b", "%5D", "%26", "%3D", "%2B", "%09", "%0A", "%C3", "%A9",
    "%c3%a9", "%E2%82%AC", "%F0%9F%98%80", "%ED%A0%80", "%F4%90%80%80", "%C0%AF", "%FF",
    "%4", "%zz", "%%", "a", "b", "x", "0", "1", "-1", "00", "-0", "9223372036854775807",
    "-9223372036854775808", "9223372036854775808", "_", "-", "$", ":", "user", "name",
    "username", "user_name", "user.name", "user name", "Username", "j_username", "login",
    "password", "__Host-", "__Secure-", "_Host-", ".Host-", "\xc3\xa9", "\xe2\x82\xac",
    "\xff", "\xc3", "\xa9", "\xed\xa0\x80", "\xf0\x9f\x98\x80", "\x80",
]


def random_body(rng):
    n = rng.randint(0, rng.choice([8, 24, 64]))
    parts = [rng.choice(TOKENS) for _ in range(n)]
    # The tokens are text standing for bytes: latin-1 keeps each char one byte.
    return "".join(parts).encode("latin-1")


def crafted():
    bodies = [
        b"", b"&", b"&&", b"=", b"==", b"a", b"a=", b"=a", b"a=1&", b"&a=1", b"a=1&&b=2",
        b"username=nobody&+username=admin", b"username=nobody&%20username=admin",
        b"username=nobody&%09username=admin", b"username%00=admin&username=x",
        b"username=a&username%00x=admin", b"username[]=a", b"username=a&username%5B%5D=b",
        b"user.name=a&user_name=b", b"user_name=a&user.name=b", b"user name=a",
        b"username=a&Username=b", b"username=a&USERNAME=b", b"username=a&username=b",
        b"username=caf%C3", b"username=%zz", b"username=%4", b"us%C3%A9r=a",
        b"j_username=a&j%5Fusername=b", b"login=a&login[=b", b"login[=a", b"a[b.c=1",
        b"a[b][c=1", b"a[ ]=1&a[ x]=2", b"a[\t]=1", b"a[b]c.d=1", b"%20%20a.b=1",
        b"._Host-x=1&__Host-y=2", b"._Secure-x=1&__Secure-y=2", b"__Host-a[=1",
        b"a[-3]=x&a[]=y", b"a[9223372036854775807]=1&a[]=2", b"a=1&a[x]=2", b"a[x]=1&a=2",
        b"a[0]=1&a[00]=2&a[-0]=3&a[1]=4", b"a[][b=1", b"a[][]=1&a[][]=2", b"a[x][]=1&a[x][]=2",
        b"username=j\xc3\xbcrgen&password=\xe9", b"username=j\xc3\xbcrgen&password=p",
        b"username=\xc3%BC", b"username=%C3\xbc", b"username=a\x00b", b"user\x00name=a",
        b"username=%ED%A0%80", b"username=%F0%9F%98", b"username=%F0%9F%98%80x",
        b"x[__Host-b]=1", b"__Host-a[__Host-b]=1", b"x[y][__Host-b]=1", b"x[__Host-b][c]=1",
        b"x[__Secure-b]=1", b"__Secure-a[__Host-b]=1", b" x[__Host-b]=1", b"x[][__Host-b]=1",
        b"x" + b"[a]" * 63 + b"[__Host-b][c]=1", b"a" + b"[x]" * 64 + b"=1", b"a" + b"[x]" * 65 + b"=1",
        b"a=0&" + b"a" + b"[x]" * 65 + b"=1", b"a" + b"[]" * 64 + b"=1",
        b"&" * 999 + b"username=x", b"&" * 1000 + b"username=x", b"&" * 1001 + b"username=x",
        b"".join(b"a%d=1&" % i for i in range(999)) + b"username=x&z=2",
        b"".join(b"a%d=1&" % i for i in range(1000)) + b"username=x&z=2",
        b"".join(b"a%d=1&" % i for i in range(1001)) + b"username=x",
    ]
    return bodies


class PhpServer:
    def __init__(self, docroot):
        with socket.socket() as s:
            s.bind(("127.0.0.1", 0))
            self.port = s.getsockname()[1]
        self.proc = subprocess.Popen(
            ["php", "-n", "-d", "display_errors=0", "-d", "log_errors=0",
             "-S", f"127.0.0.1:{self.port}", os.path.join(docroot, "dump.php")],
            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        for _ in range(100):
            try:
                socket.create_connection(("127.0.0.1", self.port), timeout=0.2).close()
                return
            except OSError:
                time.sleep(0.05)
        raise SystemExit("php -S did not start")

    def post(self, body):
        c = http.client.HTTPConnection("127.0.0.1", self.port, timeout=10)
        c.request("POST", "/", body=body,
                  headers={"Content-Type": "application/x-www-form-urlencoded"})
        text = c.getresponse().read().decode()
        c.close()
        return text.strip()

    def stop(self):
        self.proc.terminate()
        self.proc.wait()


def django_post(bodies):
    import django
    from django.conf import settings
    settings.configure(DEFAULT_CHARSET="utf-8")
    django.setup()
    from django.core.exceptions import TooManyFieldsSent
    from django.core.handlers.wsgi import WSGIRequest

    out = []
    for body in bodies:
        environ = {
            "REQUEST_METHOD": "POST", "PATH_INFO": "/login", "SERVER_NAME": "console",
            "SERVER_PORT": "80", "wsgi.url_scheme": "http", "wsgi.input": io.BytesIO(body),
            "CONTENT_TYPE": "application/x-www-form-urlencoded",
            "CONTENT_LENGTH": str(len(body)),
        }
        try:
            post = WSGIRequest(environ).POST
        except TooManyFieldsSent:
            out.append("E")
            continue
        items = [k.encode().hex() + ":[" + ",".join(v.encode().hex() for v in vs) + "]"
                 for k, vs in post.lists()]
        out.append("D{" + ",".join(items) + "}")
    return out


def qsl(bodies):
    out = []
    for body in bodies:
        try:
            text = body.decode("utf-8")
        except UnicodeDecodeError:
            text = body.decode("iso-8859-1")
        try:
            pairs = urllib.parse.parse_qsl(text, keep_blank_values=True, max_num_fields=1000)
        except ValueError:
            out.append("E")
            continue
        out.append("L[" + ",".join(k.encode().hex() + "=" + v.encode().hex()
                                   for k, v in pairs) + "]")
    return out


def main():
    n = int(sys.argv[1]) if len(sys.argv) > 1 else 3000
    seed = int(sys.argv[2]) if len(sys.argv) > 2 else 20261127
    rng = random.Random(seed)
    bodies = crafted() + [random_body(rng) for _ in range(n)]
    with tempfile.TemporaryDirectory() as tmp:
        tool = os.path.join(tmp, "login_models")
        subprocess.run(["rustc", "--edition", "2021", "-O",
                        os.path.join(ROOT, "fuzz/tools/login_models.rs"), "-o", tool],
                       check=True)
        hexed = "".join(b.hex() + "\n" for b in bodies)
        model = subprocess.run([tool], input=hexed, capture_output=True, text=True,
                               check=True).stdout.splitlines()
        model = [line.split("\t") for line in model]

        parse_str = subprocess.run(
            ["php", "-n", "-d", "display_errors=0", "-r",
             PHP_ENC + 'while (($l = fgets(STDIN)) !== false) '
                       '{ $o = []; parse_str(hex2bin(trim($l)), $o); echo enc($o), "\\n"; }'],
            input=hexed, capture_output=True, text=True, check=True).stdout.splitlines()

        with open(os.path.join(tmp, "dump.php"), "w") as f:
            f.write("<?php\n" + PHP_ENC + 'echo enc($_POST), "\\n";\n')
        server = PhpServer(tmp)
        try:
            php_post = [server.post(b) for b in bodies]
        finally:
            server.stop()

    real = {
        "php $_POST (php -S)": php_post,
        "php parse_str": parse_str,
        "python parse_qsl": qsl(bodies),
        "django request.POST": django_post(bodies),
    }
    failed = False
    print(f"bodies: {len(bodies)} ({len(crafted())} crafted, {n} random, seed {seed})")
    for col, (name, answers) in enumerate(real.items()):
        bad = [i for i, b in enumerate(bodies) if model[i][col] != answers[i]]
        print(f"{name:22} agree {len(bodies) - len(bad)}/{len(bodies)}")
        for i in bad[:5]:
            failed = True
            print(f"   body   {bodies[i]!r}"[:400])
            print(f"   model  {model[i][col]}"[:400])
            print(f"   real   {answers[i]}"[:400])
        failed |= bool(bad)
    sys.exit(1 if failed else 0)


if __name__ == "__main__":
    main()
