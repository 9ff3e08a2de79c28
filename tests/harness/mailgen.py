"""Deterministic generator of realistic RFC 5322 messages for tests (stdlib only).

    gen = MailGen(seed=42)
    raw = gen.message()                    # bytes, CRLF line endings
    box = build_mailbox({"INBOX": 300, "Archive/2023": 200}, seed=1, duplicates=10)
    # -> {"INBOX": [bytes, ...], "Archive/2023": [...]}, some messages byte-identical
    #    across folders (for dedup tests)

The same seed always yields the same bytes (on any Python 3.9+).  Messages carry
From/To/Cc/Subject/Date/Message-ID/MIME-Version headers; some subjects and names are RFC 2047
encoded words (UTF-8 B/Q, ISO-8859-1 Q); bodies are text/plain (7bit, 8bit UTF-8 or
quoted-printable Latin-1), multipart/alternative (text + HTML) or multipart/mixed with a
base64 attachment.  Sizes: mostly 2-50 KB, some 50-200 KB, a few 200 KB-2 MB.
"""

import base64
import datetime
import hashlib
import random

__all__ = ["MailGen", "build_mailbox", "build_spec", "DEFAULT_SPEC", "unique_count",
           "sha256", "encode_word", "bare_lf_message"]

# The kind of account layout the integration tests use (nested, non-ASCII, special-use).
DEFAULT_SPEC = {"INBOX": 300, "Archive/2023": 200, "Archive/2023/Q1": 50,
                "Entw\u00fcrfe": 20, "Sent": 40}

_FIRST = ["Alice", "Bob", "Carol", "Dave", "Erin", "Frank", "Grace", "Heidi", "Ivan", "Judy",
          "Mallory", "Niaj", "Olivia", "Peggy", "Rupert", "Sybil", "Trent", "Victor", "Walter",
          "J\u00fcrgen", "Bj\u00f6rn", "Fran\u00e7oise", "Ren\u00e9e", "Zo\u00eb", "S\u00f8ren",
          "\u0141ukasz", "\u00c9lodie", "Jos\u00e9", "\u5c71\u7530", "\u0410\u043d\u043d\u0430"]
_LAST = ["Smith", "Jones", "Miller", "Garcia", "Nguyen", "Schmidt", "Rossi", "Dubois", "Kowalski",
         "M\u00fcller", "Sch\u00e4fer", "G\u00f3mez", "\u00d8stergaard", "Ot\u00e1vio", "Tanaka"]
_DOMAINS = ["example.org", "example.com", "example.net", "mail.example.de", "corp.example.fr"]
_ASCII_SUBJECTS = [
    "Quarterly report", "Re: lunch tomorrow?", "Invoice {n} for October", "Meeting notes",
    "Fwd: travel itinerary", "Your order #{n} has shipped", "Re: Re: budget review",
    "Weekly status update", "Build {n} failed", "Reminder: dentist appointment",
    "Photos from the weekend", "[list] Digest, Vol {n}", "Contract draft v{n}",
]
_INTL_SUBJECTS = [
    "Gr\u00fc\u00dfe aus M\u00fcnchen", "R\u00e9union de lundi \u00e0 10h", "\u00bfQu\u00e9 tal?",
    "Angebot f\u00fcr {n} St\u00fcck", "Caf\u00e9 cr\u00e8me br\u00fbl\u00e9e recipe",
    "\u00c5rsm\u00f8te i {n}", "Z\u00fcrich \u2192 Gen\u00e8ve", "\u4f1a\u8b70\u306e\u304a\u77e5\u3089\u305b",
    "\u041f\u0440\u0438\u0432\u0435\u0442 \u0438\u0437 \u041c\u043e\u0441\u043a\u0432\u044b",
    "Emoji test \U0001F600 \U0001F4E7", "Fa\u00e7ade na\u00efve co\u00f6perate",
]
_LATIN1_SUBJECTS = ["Gr\u00fc\u00dfe und K\u00fcsse", "Pr\u00e9sentation d\u00e9taill\u00e9e",
                    "A\u00f1o nuevo {n}", "\u00c6bler og p\u00e6rer"]
_WORDS = (
    "the of and to in is that for it as was with be by on not he this are or his from at which "
    "but have an they you were her she there been one all we their has would when if so no "
    "archive message server folder invoice meeting project report schedule budget review "
    "customer deadline update proposal contract delivery support network backup release "
    "quarter figures attached please find below regards thanks tomorrow yesterday morning "
    "afternoon agenda minutes draft final version comment question answer issue ticket").split()
_INTL_WORDS = ("gr\u00fc\u00dfe m\u00f6glich \u00e9t\u00e9 caf\u00e9 na\u00efve \u00fcber "
               "stra\u00dfe se\u00f1or \u00e5r \u00f8l").split()
_ATTACH = [("report.pdf", "application/pdf"), ("photo.jpg", "image/jpeg"),
           ("data.xlsx", "application/vnd.openxmlformats-officedocument.spreadsheetml.sheet"),
           ("archive.zip", "application/zip"), ("scan.png", "image/png"),
           ("Pr\u00e4sentation.pdf", "application/pdf")]


def sha256(raw):
    return hashlib.sha256(raw).hexdigest()


def _qp_word_bytes(b):
    out = []
    for c in b:
        if c == 0x20:
            out.append("_")
        elif (0x30 <= c <= 0x39) or (0x41 <= c <= 0x5A) or (0x61 <= c <= 0x7A) or c in b"!*+-/":
            out.append(chr(c))
        else:
            out.append("=%02X" % c)
    return "".join(out)


def encode_word(text, charset="utf-8", enc="B"):
    """RFC 2047 encoded-word(s) for text; several words joined by CRLF SP when longer
    than 75 characters each (split on character boundaries)."""
    words = []
    prefix = "=?%s?%s?" % (charset.upper() if charset != "utf-8" else "UTF-8", enc)
    chunk = ""

    def enc_chunk(s):
        b = s.encode(charset)
        if enc == "B":
            return prefix + base64.b64encode(b).decode("ascii") + "?="
        return prefix + _qp_word_bytes(b) + "?="

    for ch in text:
        if chunk and len(enc_chunk(chunk + ch)) > 75:
            words.append(enc_chunk(chunk))
            chunk = ""
        chunk += ch
    if chunk:
        words.append(enc_chunk(chunk))
    return "\r\n ".join(words)


def _qp_body(text, charset):
    """Quoted-printable encoding of text (CRLF lines, soft breaks at 76)."""
    out_lines = []
    for line in text.split("\r\n"):
        b = line.encode(charset)
        enc = []
        for i, c in enumerate(b):
            if c == 0x3D or c > 0x7E or (c < 0x20 and c != 0x09) or \
                    (c in (0x20, 0x09) and i == len(b) - 1):
                enc.append("=%02X" % c)
            else:
                enc.append(chr(c))
        cur = ""
        for tok in enc:
            if len(cur) + len(tok) > 75:
                out_lines.append(cur + "=")
                cur = ""
            cur += tok
        out_lines.append(cur)
    return "\r\n".join(out_lines)


def _b64_lines(data):
    s = base64.b64encode(data)
    return b"\r\n".join(s[i:i + 76] for i in range(0, len(s), 76))


def _html_escape(s):
    return s.replace("&", "&amp;").replace("<", "&lt;").replace(">", "&gt;")


class MailGen:
    """Seeded message factory.  message() returns one message as bytes."""

    def __init__(self, seed=0, large_fraction=0.02, max_size=None, recipient="alice@example.org"):
        """large_fraction: share of 200 KB-2 MB messages; max_size caps any message's
        target size (bytes) for fast tests."""
        self.seed = seed
        self.rng = random.Random(seed)
        self.large_fraction = large_fraction
        self.max_size = max_size
        self.recipient = recipient
        self.count = 0
        prng = random.Random(seed * 7919 + 17)
        # A pool of paragraphs to assemble bodies from quickly.
        self._paras = [self._make_para(prng, intl=(i % 7 == 0)) for i in range(160)]

    # -- pieces ---------------------------------------------------------------------------

    @staticmethod
    def _make_para(rng, intl=False):
        words = []
        for _ in range(rng.randint(25, 110)):
            if intl and rng.random() < 0.15:
                words.append(rng.choice(_INTL_WORDS))
            else:
                words.append(rng.choice(_WORDS))
        words[0] = words[0].capitalize()
        lines, cur = [], ""
        for w in words:
            if len(cur) + len(w) + 1 > 72:
                lines.append(cur)
                cur = w
            else:
                cur = (cur + " " + w) if cur else w
        lines.append(cur + ".")
        return "\r\n".join(lines)

    def _size(self):
        r = self.rng.random()
        if r < self.large_fraction:
            size = int(self.rng.uniform(200e3, 2e6))
        elif r < self.large_fraction + 0.08:
            size = int(self.rng.uniform(50e3, 200e3))
        else:
            # log-uniform between 2 and 50 KB
            size = int(2000 * (25 ** self.rng.random()))
        if self.max_size:
            size = min(size, self.max_size)
        return size

    def _person(self):
        first, last = self.rng.choice(_FIRST), self.rng.choice(_LAST)
        local = "%s.%s" % (first, last)
        local = "".join(c for c in local.lower() if c.isascii() and (c.isalnum() or c == ".")) \
            or "user%d" % self.rng.randint(1, 999)
        addr = "%s@%s" % (local.strip("."), self.rng.choice(_DOMAINS))
        name = "%s %s" % (first, last)
        if name.isascii():
            shown = '"%s"' % name if self.rng.random() < 0.3 else name
        else:
            shown = encode_word(name, "utf-8", self.rng.choice("BQ"))
        return "%s <%s>" % (shown, addr)

    def _subject(self):
        n = self.rng.randint(1, 99999)
        r = self.rng.random()
        if r < 0.65:
            return self.rng.choice(_ASCII_SUBJECTS).format(n=n)
        if r < 0.9:
            return encode_word(self.rng.choice(_INTL_SUBJECTS).format(n=n), "utf-8",
                               self.rng.choice("BQ"))
        return encode_word(self.rng.choice(_LATIN1_SUBJECTS).format(n=n), "iso-8859-1", "Q")

    def _date(self):
        ts = self.rng.randint(1546300800, 1735603200)  # 2019-01-01 .. 2024-12-31
        tz = datetime.timezone(datetime.timedelta(minutes=self.rng.choice(
            [0, 60, 120, -300, -420, 330, 540, -180])))
        d = datetime.datetime.fromtimestamp(ts, tz)
        days = ["Mon", "Tue", "Wed", "Thu", "Fri", "Sat", "Sun"]
        months = ["Jan", "Feb", "Mar", "Apr", "May", "Jun", "Jul", "Aug", "Sep", "Oct", "Nov", "Dec"]
        off = d.utcoffset().total_seconds() // 60
        sign = "+" if off >= 0 else "-"
        off = abs(int(off))
        return "%s, %d %s %d %02d:%02d:%02d %s%02d%02d" % (
            days[d.weekday()], d.day, months[d.month - 1], d.year, d.hour, d.minute, d.second,
            sign, off // 60, off % 60)

    def _text(self, size):
        parts, total = [], 0
        greeting = "Hi,\r\n"
        parts.append(greeting)
        total += len(greeting)
        while total < size:
            p = self.rng.choice(self._paras)
            parts.append(p + "\r\n\r\n")
            total += len(p) + 4
        parts.append("Regards\r\n-- \r\nsent by mailgen #%d\r\n" % self.count)
        return "".join(parts)

    def _boundary(self):
        return "=_b%016x" % self.rng.getrandbits(64)

    def _text_part(self, size, with_headers=True):
        """(headers, body bytes) of a text/plain part."""
        text = self._text(size)
        kind = self.rng.random()
        if kind < 0.6 and text.isascii():
            h = "Content-Type: text/plain; charset=us-ascii\r\nContent-Transfer-Encoding: 7bit\r\n"
            body = text.encode("ascii")
        elif kind < 0.85:
            h = "Content-Type: text/plain; charset=utf-8\r\nContent-Transfer-Encoding: 8bit\r\n"
            body = text.encode("utf-8")
        else:
            latin = text.encode("iso-8859-1", "replace").decode("iso-8859-1")
            h = ("Content-Type: text/plain; charset=iso-8859-1\r\n"
                 "Content-Transfer-Encoding: quoted-printable\r\n")
            body = _qp_body(latin, "iso-8859-1").encode("ascii")
        return h, body, text

    def _alternative(self, size):
        h_text, b_text, text = self._text_part(size // 2)
        paras = "".join("<p>%s</p>\r\n" % _html_escape(p).replace("\r\n", "\r\n")
                        for p in text.split("\r\n\r\n") if p.strip())
        html = ("<!DOCTYPE html>\r\n<html><head><meta charset=\"utf-8\"></head>\r\n<body>\r\n"
                + paras + "</body></html>\r\n")
        b = self._boundary()
        body = (("--%s\r\n" % b).encode() + h_text.encode() + b"\r\n" + b_text + b"\r\n"
                + ("--%s\r\n" % b).encode()
                + b"Content-Type: text/html; charset=utf-8\r\n"
                  b"Content-Transfer-Encoding: 8bit\r\n\r\n"
                + html.encode("utf-8") + ("\r\n--%s--\r\n" % b).encode())
        return 'Content-Type: multipart/alternative; boundary="%s"\r\n' % b, body

    def _mixed(self, size):
        text_size = min(max(600, size // 10), 8000)
        if self.rng.random() < 0.5:
            inner_h, inner_b, _ = self._text_part(text_size)
        else:
            inner_h, inner_b = self._alternative(text_size)
        att_size = max(256, int((size - text_size) * 0.74))
        fname, ctype = self.rng.choice(_ATTACH)
        data = self.rng.getrandbits(att_size * 8).to_bytes(att_size, "little")
        if fname.isascii():
            disp = 'attachment; filename="%s"' % fname
        else:
            disp = "attachment; filename*=UTF-8''%s" % "".join(
                c if c.isascii() and c.isalnum() or c in ".-_" else
                "".join("%%%02X" % x for x in c.encode("utf-8")) for c in fname)
        b = self._boundary()
        body = (("--%s\r\n" % b).encode() + inner_h.encode() + b"\r\n" + inner_b + b"\r\n"
                + ("--%s\r\n" % b).encode()
                + ("Content-Type: %s; name=\"%s\"\r\n" % (ctype, fname.encode(
                    "ascii", "replace").decode())).encode()
                + b"Content-Transfer-Encoding: base64\r\n"
                + ("Content-Disposition: %s\r\n\r\n" % disp).encode()
                + _b64_lines(data) + ("\r\n--%s--\r\n" % b).encode())
        return 'Content-Type: multipart/mixed; boundary="%s"\r\n' % b, body

    # -- public ---------------------------------------------------------------------------

    def message(self, size=None, kind=None):
        """One message (bytes, CRLF).  kind: 'plain', 'alternative', 'mixed' or None
        (random: ~55/25/20 %; large messages are always 'mixed')."""
        self.count += 1
        size = self._size() if size is None else size
        if kind is None:
            r = self.rng.random()
            kind = "plain" if r < 0.55 else "alternative" if r < 0.8 else "mixed"
            if size > 150e3:
                kind = "mixed"
        hdr = ["From: %s" % self._person(), "To: %s" % self.recipient]
        if self.rng.random() < 0.35:
            hdr.append("Cc: %s" % ", ".join(self._person() for _ in range(self.rng.randint(1, 3))))
        hdr.append("Subject: %s" % self._subject())
        hdr.append("Date: %s" % self._date())
        hdr.append("Message-ID: <%016x.%d@%s>" % (self.rng.getrandbits(64), self.count,
                                                  self.rng.choice(_DOMAINS)))
        hdr.append("MIME-Version: 1.0")
        if self.rng.random() < 0.2:
            hdr.append("X-Mailer: mailgen/1.0 (seed %d)" % self.seed)
        if kind == "plain":
            h, body, _ = self._text_part(size)
        elif kind == "alternative":
            h, body = self._alternative(size)
        elif kind == "mixed":
            h, body = self._mixed(size)
        else:
            raise ValueError("unknown kind %r" % kind)
        head = "\r\n".join(hdr) + "\r\n" + h + "\r\n"
        return head.encode("utf-8") + body

    def messages(self, n, **kw):
        return [self.message(**kw) for _ in range(n)]


def build_mailbox(spec=None, seed=0, duplicates=10, same_folder_duplicates=0, **genkw):
    """Build {folder: [bytes, ...]} with len(list) == spec[folder] for every folder.

    duplicates: that many messages are replaced by an exact copy of a message from another
    folder (same bytes), so the whole mailbox holds fewer distinct messages than its count.
    same_folder_duplicates: copies within one folder.  Extra keyword arguments go to MailGen
    (large_fraction, max_size, ...)."""
    spec = DEFAULT_SPEC if spec is None else spec
    gen = MailGen(seed, **genkw)
    box = {folder: gen.messages(n) for folder, n in spec.items()}
    rng = random.Random(seed * 31 + 7)
    folders = [f for f, msgs in box.items() if msgs]
    if len(folders) >= 2:
        for _ in range(duplicates):
            src, dst = rng.sample(folders, 2)
            box[dst][rng.randrange(len(box[dst]))] = box[src][rng.randrange(len(box[src]))]
    for _ in range(same_folder_duplicates):
        f = rng.choice([f for f in folders if len(box[f]) >= 2])
        i, j = rng.sample(range(len(box[f])), 2)
        box[f][j] = box[f][i]
    return box


build_spec = build_mailbox


def unique_count(box):
    """Number of distinct messages (by bytes) in a {folder: [bytes]} mailbox."""
    return len({sha256(m) for msgs in box.values() for m in msgs})


def bare_lf_message(seed=0):
    """A small message with bare LF line endings (servers such as Dovecot serve it with
    CRLF; hash what the server sends)."""
    return MailGen(seed).message(size=1500, kind="plain").replace(b"\r\n", b"\n")
