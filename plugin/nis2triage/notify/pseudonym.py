"""Keyed pseudonyms for addresses (IP, e-mail, MAC), user names and host names in
anything leaving the organisation.

GDPR Art. 5(1)(c) (data minimisation): the CCB needs to know that an account,
address or machine was involved, not which person it belongs to (a laptop is
often named after its user). A pseudonym is an
HMAC of the value under the entity's own key, so the entity (and only it) can
map it back through the lookup table it keeps in its own index.
"""

from __future__ import annotations

import hashlib
import hmac
import ipaddress
import re
import string
import unicodedata
from collections.abc import Iterable
from dataclasses import dataclass
from typing import Any

from nis2triage.assets import address_of, ipv4_inside
from nis2triage.records import stable_id
from nis2triage.store import Store

# Candidate IPv4 and IPv6 literals; each candidate is confirmed by `ipaddress`.
# A full stop may end the sentence after an address ("from 203.0.113.7."), so only a
# full stop followed by a digit continues it, but for one port: tcpdump and pf write an
# address and its port as 10.0.0.5.51234, and such a line pasted into a report left both
# its addresses in clear. Longer runs of numbers (an SNMP OID, 1.3.6.1.4.1.9) stay.
_V4_END = r"(?=\.\d{1,5}(?!\d|\.\d)|(?!\d|\.\d))"
_IPV4 = re.compile(rf"(?<![\d.])(?:\d{{1,3}}\.){{3}}\d{{1,3}}{_V4_END}")
# Identifiers derived from an entity by a plain hash: a dictionary attack would undo
# them, so anything leaving the organisation carries a keyed version instead. The
# incident's becomes `incident-<hmac>`; the incidents command takes it as well as the
# local id, through the lookup table (`reveal`).
ID_KINDS = {"alert_id": "ref", "alert_ids": "ref", "reference": "ref", "incident_id": "incident"}
# A colon may come before an address ("src_ip:2001:db8::7"): `_address` then tries the
# candidate without it.
# A colon after it ends a field ("from 2001:db8::7: closed"): `_address` then tries the
# candidate without it as well.
_IPV6 = re.compile(r"(?<![0-9A-Za-z])(?:[0-9A-Fa-f]{0,4}:){2,7}[0-9A-Fa-f]{0,4}(?![0-9A-Za-z])")
# An IPv6 address ending in an IPv4 one (NAT64's 64:ff9b::185.190.58.151, RFC 6052 2.1):
# read whole first, or the IPv4 pass takes its tail and the IPv6 pass the groups before
# it (`64:ff9b::185` is an address too), which mangled a kept attacker's address into
# `ip-<pseudonym>185.190.58.151` and left the prefix of any other in clear.
_IPV6_DOTTED = re.compile(
    r"(?<![0-9A-Za-z:.])(?:[0-9A-Fa-f]{0,4}:){2,6}(?:\d{1,3}\.){3}\d{1,3}(?!\d|\.\d)"
)


# E-mail addresses. The local part takes letters of any script with their combining
# marks (as macOS writes them, NFD), digits and . + ' ! * ^ { } ~ $ -, but not a URL
# query's = % | (which would swallow a query string, tokens and passwords with it); the
# @ may be URL-encoded (%40). An & joins such runs (jan&marie@, R&D@) unless the address
# starts right after a query's = ? or &: `?a=1&b@example.be` keeps its `1` and loses
# only `b@example.be`, `?a=1&token=xyz@..` only `xyz@..`. The domain has at least one
# dot and a last label with a letter (`lodash@4.17.21` and `sigma@v2` are versions, not
# mail, and systemd's `getty@tty1.service` is a unit), or is one label (below). Every
# alternative below is disjoint from the others: overlapping ones (a letter both \w and
# non-ASCII) backtrack exponentially on text with no @, and a short Russian file name
# took 40 s; the two readings of a local part exclude each other by what precedes it,
# so each word is read once. Known gaps: jan&marie@ in a query's value (`?to=jan&marie@..`:
# only marie@.. is found), HTML-escaped quotes (`&quot;jan&quot;@..`).
def _marks() -> str:
    r"""Unicode's combining marks as a character class: not \w in Python, yet part of
    a word in scripts that write vowels as marks (Devanagari) and in NFD text."""
    ranges: list[tuple[int, int]] = []
    for code in range(0x300, 0x30000):
        if unicodedata.category(chr(code)).startswith("M"):
            if ranges and ranges[-1][1] == code - 1:
                ranges[-1] = (ranges[-1][0], code)
            else:
                ranges.append((code, code))
    return "[" + "".join(f"{chr(a)}-{chr(b)}" if a != b else chr(a) for a, b in ranges) + "]"


_MARK = _marks()
# URL-encoded, once or twice (a URL in another's query: a redirect, a login's `next=`):
# what a local part holds that a browser's form encodes (+ ' ! * ^ { } ~ $ and, by some
# encoders, . - _), and the @. The pattern began after the last %2B of
# `jan.peeters%2Bnews%40example.be`, and `jan.peeters` left in clear. An encoded
# separator (a space, & / : = ?) ends a local part, as it does written plainly, and one
# starts after it. No reading starts inside one of these encodings (`%3Djan`: after the
# 3D, not before it; nor at each 2B of a long run of %2B without an @, which took 15 s
# for 10 kB). Letters outside ASCII come as their UTF-8 bytes (`ren%C3%A9e%40..` left
# `ren%C3%` in clear); no reading starts at a byte that continues one.
_PERCENT = r"%(?:25)?"
_LOCAL_CODES = ("21", "24", "27", "2A", "2B", "2D", "2E", "5E", "5F", "7B", "7D", "7E")
_SEPARATOR_CODES = ("20", "26", "2F", "3A", "3D", "3F")
_CONTINUING = rf"(?:{_PERCENT}[89AB][0-9A-F])"
_UTF8 = (
    rf"{_PERCENT}(?:[CD][0-9A-F]{_CONTINUING}|E[0-9A-F]{_CONTINUING}{{2}}"
    rf"|F[0-4]{_CONTINUING}{{3}})"
)
_ENCODED_LOCAL = rf"(?:{_PERCENT}(?:{'|'.join(_LOCAL_CODES)})|{_UTF8})"
_ENCODED_AT = rf"{_PERCENT}40"
# The @ however text carries it: URL-encoded, as an HTML entity (a web page's mailto),
# or as a JSON, C or Python escape (a document or a string a log line holds).
_AT_SIGN = rf"(?:@|{_ENCODED_AT}|&#0*64;|&#[xX]0*40;|&commat;|\\u0040|\\x40)"


def _not_inside(codes: tuple[str, ...]) -> str:
    """At no place inside one of `%<code>` (between the % and the code, or within it)."""
    seconds: dict[str, str] = {}
    for code in codes:
        seconds[code[0]] = seconds.get(code[0], "") + code[1]
    within = "".join(f"(?!(?<=%{first})[{chars}])" for first, chars in seconds.items())
    continuing = "(?![89AB][0-9A-F](?<=[89A-F][0-9A-F]%..))"
    return f"(?!(?<=%)(?:{'|'.join(codes)})){within}{continuing}"


_NOT_INSIDE = _not_inside((*_LOCAL_CODES, *_SEPARATOR_CODES, "25", "40"))
_AFTER_SEPARATOR = rf"(?<=%(?:{'|'.join(_SEPARATOR_CODES)}))"
_LOCAL = rf"(?:[\w.+'!*^{{}}~$-]|{_MARK}|{_ENCODED_LOCAL})+"
_MAIL_LOCAL = (
    rf"{_NOT_INSIDE}(?:(?<![\w.+'!*^{{}}~$-])(?<!{_MARK})|{_AFTER_SEPARATOR})"
    rf"(?:(?<![=?&]){_LOCAL}(?:&{_LOCAL})*|(?<=[=?&]){_LOCAL})"
)
_LABEL = rf"(?:[^\W_]|-|{_MARK})+"
_UNITS = "service|socket|timer|mount|target|path|slice|scope|device|swap"
# Mail or a login to a one-label host (jan@intranet, root@web-01, jan@jan-laptop:~$ as a
# shell prompt, jan@CORP as a Kerberos realm) names a person as surely as mail to a
# domain. What else follows an @ in one label is a version or a release tag, and the
# rule is drawn between them. The label's first word is letters only: `sigma@v2`,
# `actions/checkout@v4`, `image@sha256:..`, `getty@tty1` and `wg-quick@wg0` put digits
# in it and stay, and so do `pc7` and `srv01` (a gap: no shape tells `jan@pc7` from
# `getty@tty1`). Words after a hyphen may hold digits (web-01, ip-10-0-0-5). A release
# tag stays, alone or numbered (`pkg@latest`, `npm@latest-6`, `next@canary`,
# `actions/checkout@main`, `go get ..@upgrade`), and so does a package manager's
# protocol (`alias@npm:react`, yarn's `pkg@workspace:.`): a host named like a tag
# (`jan@edge`) is a gap. Anything else is replaced, though it may name no one
# (`openvpn@server`, a systemd instance without its `.service`): the safe side. A label
# followed by a dot and more is no one-label host: it is a domain, a unit or a version.
_TAGS = (
    "latest|next|beta|alpha|rc|canary|stable|nightly|dev|develop|edge|experimental|"
    "insiders|lts|main|master|head|preview|current|upgrade|patch|none|snapshot|unstable"
)
_PROTOCOLS = "npm|workspace|portal|link|file|exec|git|github|patch"
_LABEL_END = rf"(?![\w-]|{_MARK}|\.(?:[^\W_]|{_MARK}))"
_ONE_LABEL = (
    rf"(?!(?:{_TAGS})(?:-\d+)*{_LABEL_END}|(?:{_PROTOCOLS}):)"
    rf"(?:[^\W\d_]|{_MARK})+(?:-+(?:[^\W_]|{_MARK})+)*{_LABEL_END}"
)
_EMAIL = re.compile(
    rf"{_MAIL_LOCAL}{_AT_SIGN}(?:(?:{_LABEL}\.)+(?!(?:{_UNITS})\b)"
    # The last label, a top-level domain, starts with a letter and has two characters or
    # more: `openssh@9.6p1` and `node@18.x` are versions.
    rf"[^\W\d_](?:[^\W_]|-|{_MARK})+|{_ONE_LABEL})",
    re.IGNORECASE,
)
# An e-mail address to an address literal (jan.peeters@[192.0.2.1], RFC 5321 4.1.3):
# taken whole before the address passes, which replaced the address and left the person.
_ADDRESS_LITERAL = r"\[(?:IPv6:)?[0-9A-Fa-f:.]{2,45}\]"
_LITERAL_EMAIL = re.compile(rf"{_MAIL_LOCAL}{_AT_SIGN}{_ADDRESS_LITERAL}", re.IGNORECASE)
# A quoted local part (RFC 5321 4.1.2: "jan peeters"@example.be, "jan\"x"@..), also as
# JSON escapes it (\"jan peeters\"@..), to any host: no version is written so, so the
# domain needs no dot. The quotes are replaced with the address. The quoted text is
# bounded by RFC 5321's 64 octets for a local part, so that text of many " and no @
# costs at most 64 characters a quote; its two kinds of character (a backslash pair, any
# other) are disjoint, and no control character is taken (nor the marks of `_hold`).
# Longer, it is no local part: the plain pattern reads the word before the @.
_QUOTED = r'"(?P<quoted>(?:[^"\\\x00-\x1f\x7f]|\\[^\x00-\x1f\x7f]){1,64})"'
_JSON_QUOTED = r'\\"(?P<json>[^"\\\x00-\x1f\x7f]{1,64})\\"'
_QUOTED_EMAIL = re.compile(
    rf"(?:{_QUOTED}|{_JSON_QUOTED}){_AT_SIGN}"
    rf"(?P<domain>{_ADDRESS_LITERAL}|{_LABEL}(?:\.{_LABEL})*)",
    re.IGNORECASE,
)
# What a local part may hold without quotes, as `_EMAIL` reads it.
_UNQUOTED = re.compile(rf"{_LOCAL}(?:&{_LOCAL})*", re.IGNORECASE)
# A URL's user name and password (https://jan.peeters:secret@host/): the name is a
# person's, the password must not leave at all.
# The password runs to the last @ of the URL (it may hold @ # /); a URL escaped in JSON
# (https:\/\/) counts too.
# Both parts bounded: without a bound, text of many `://a:` with no @ took 16 s per 100 kB.
_USERINFO = re.compile(r"(?:(?<=://)|(?<=:\\/\\/))([^\s/?#@:]{1,256})(?::(\S{0,256}))?@")
# The same without a scheme, as proxy settings, git and rsync write it
# (http_proxy=jan:s3cret@proxy.example:8080, jan:pw@git.example:team/repo,
# jan:pw@backup::module): a host (a name or [IPv6]) then a port, a path or a query. The
# password runs to the last @ before that host. Without anything after the host
# (`to:jan@example.be` is more often a mail header than a login) it is left to the e-mail
# pattern: a gap for `jan:pw@host` alone. Not a login: a mail header's `from:`, `to:`..
# before an address, and an image's digest (nginx:1.25@sha256:..).
_BARE_USERINFO = re.compile(
    r"(?<![^\s=,;\"'`(\[{<>|:*])(?!(?i:from|to|cc|bcc|rcpt|sender|mailto|reply-to):)"
    # Not a URL's scheme (https://..), which `_USERINFO` takes.
    r"([\w.+%-]{1,128}):(?!/|\\/)([^\s<>\"'`]{1,256})@(?!sha\d+:)"
    r"(?=(?:\[[0-9A-Fa-f:.]+\]|[\w-]+(?:\.[\w-]+)*)(?::[:\w/]|/|[?#]))"
)
# A network card's MAC address names one device, often one person's: six groups of hex
# digits joined by one separator (aa:bb:.., AA-BB-.. as ECS writes it, 0:1b:63:.. as BSD
# prints it without leading zeros), or three quads (Cisco aabb.ccdd.eeff, HP aabb-ccdd-
# eeff); in a URL, its colons may be encoded (aa%3Abb%3A..). Looked for after IPv6
# addresses (a MAC is never a valid one). A run of more than six groups is no MAC. Known
# gaps: twelve bare hex digits (RADIUS' aabbccddeeff), dotted pairs.
_MAC = re.compile(
    r"(?:(?<![0-9A-Za-z])|(?<=%[0-9A-Fa-f]{2}))(?<!::)"
    r"(?:[0-9A-Fa-f]{1,2}([:-]|%3[Aa])(?:[0-9A-Fa-f]{1,2}\1){4,}[0-9A-Fa-f]{1,2}"
    r"|(?<![0-9A-Fa-f][:.-])[0-9A-Fa-f]{4}([.:-])[0-9A-Fa-f]{4}\2[0-9A-Fa-f]{4}"
    r"(?![:.-][0-9A-Fa-f]))"
    r"(?![0-9A-Za-z])"
)
# An address written with dashes in a host name: after a label (AWS' ip-10-1-2-3 and
# ec2-203-0-113-7, a provider's static-, dhcp-, host86-.. or ip68-..), or leading a
# domain or a suffix (203-0-113-7.dyn.example.net, 203-0-113-7-static.isp..). A reversed
# one (7-113-0-203.dsl..) is taken as written: replaced, though under another pseudonym
# than the address itself. A group with a leading zero (backup-05-12-26-10.tar) is a
# date or a counter, not an address.
_OCTET = r"(?:0|[1-9]\d{0,2})"
_QUAD = rf"({_OCTET}(?:-{_OCTET}){{3}})"
_AFTER_QUAD = r"(?:-[A-Za-z]|\.[A-Za-z0-9-]*[A-Za-z])"
_DASHED_IPV4 = re.compile(
    rf"(?<![\w-])(?:([A-Za-z][A-Za-z0-9]*?(?:-[A-Za-z][A-Za-z0-9]*?)*-?){_QUAD}"
    rf"(?={_AFTER_QUAD}|(?![\w-]))|{_QUAD}(?={_AFTER_QUAD}))"
)


# Indicators written defanged, as analysts share them so that no one clicks them
# (185.190.58[.]151, alice(at)corp[.]example): each is replaced by the pseudonym of the
# address it stands for, the same as the address written plainly. A dot may be written
# [.] (.) {.} [dot] (dot), full width (U+FF0E) or URL-encoded (%2E, a query string's
# value; twice, %252E, in a URL inside another), the @ as [@] (@) [at] (at) {at}, full
# width (U+FF20, as an input method in Japanese or Chinese types it) or small (U+FE6B). At least
# one part must be defanged: plain addresses are left to the patterns above. Known gaps:
# defanged IPv6 ([:]), words with spaces (`alice at corp dot example`), a defanged
# address with a quoted local part or a one-label host (`alice(at)intranet` reads as
# `foo(at)bar`, which names no one).
_DOT = r"(?:\.|\[\.\]|\(\.\)|\{\.\}|\[dot\]|\(dot\)|\uff0e|%(?:25)?2e)"
_AT = r"(?:@|\[@\]|\(@\)|\[at\]|\(at\)|\{at\}|\uff20|\ufe6b)"
_DEFANGED_IPV4 = re.compile(rf"(?<![\d.])\d{{1,3}}(?:{_DOT}\d{{1,3}}){{3}}(?!\d|{_DOT}\d)", re.I)
_DEFANGED_EMAIL = re.compile(
    rf"{_MAIL_LOCAL}{_AT}(?:{_LABEL}{_DOT})+[^\W\d_](?:[^\W_]|-|{_MARK})+",
    re.IGNORECASE,
)
_FANGS = re.compile(
    r"\[\.\]|\(\.\)|\{\.\}|\[dot\]|\(dot\)|\uff0e|%(?:25)?2e|\[@\]|\(@\)|\[at\]|\(at\)|\{at\}"
    r"|\uff20|\ufe6b",
    re.I,
)


def _refanged(text: str) -> str:
    """A defanged indicator as written plainly (185.190.58[.]151 as 185.190.58.151)."""
    return _FANGS.sub(lambda m: "@" if _is_at(m.group(0)) else ".", text)


def _is_at(fang: str) -> bool:
    return fang in ("\uff20", "\ufe6b") or fang.lower()[1:-1] in ("@", "at")


class Written(str):
    """Text a person wrote (an acknowledgement's reason, say): it keeps its words, losing
    only IP, e-mail and MAC addresses, as the `written` keys of `scrub` do."""


class Verbatim(str):
    """A value that leaves exactly as it is, under any key: an authority's own reference
    (CCB-2026-17), which its `reference` key would otherwise turn into a pseudonym."""


class Pseudonymiser:
    def __init__(self, key: bytes) -> None:
        self.key = key
        self.table: dict[str, str] = {}
        # Addresses left as they are during one `scrub` (its `kept_addresses`), and the
        # pattern that finds them as written plainly.
        self._kept: frozenset[str] = frozenset()
        self._kept_written: re.Pattern[str] | None = None

    def pseudonym(self, value: str, kind: str) -> str:
        digest = hmac.new(self.key, f"{kind}\0{value}".encode(), hashlib.sha256).hexdigest()
        name = f"{kind}-{digest[:16]}"
        self.table[name] = value
        return name

    def scrub(
        self,
        payload: Any,
        users: Iterable[str] = (),
        hosts: Iterable[str] = (),
        as_is: Iterable[str] = (),
        written: Iterable[str] = (),
        names_everywhere: bool = False,
        kept_addresses: Iterable[str] = (),
    ) -> Any:
        """A copy of `payload` with every address, e-mail address and listed user and host
        name replaced, but for the IP addresses of `kept_addresses` (an incident's attacker
        indicators), however they are written.

        Under the keys in `as_is` nothing is replaced (the entity's own identification,
        who prepared the report). Under the keys in `written` (what an analyst wrote)
        only IP, e-mail and MAC addresses are: an account called `root` or `test` must
        not turn those words of a sentence into pseudonyms; with `names_everywhere` the
        names are replaced there too (what no person has read before it leaves).
        """
        kinds = {_nfc(h): "host" for h in hosts if h} | {_nfc(u): "user" for u in users if u}
        # Longest first, so that `web01.corp` is replaced whole before a name inside it.
        names = sorted(kinds.items(), key=lambda item: len(item[0]), reverse=True)
        written_names = names if names_everywhere else []
        scope = _Scope(names, frozenset(as_is), frozenset(written), written_names)
        kept = (address_of(a) for a in kept_addresses)
        self._kept = frozenset(str(a) for a in kept if a is not None)
        self._kept_written = _written_as(self._kept)
        try:
            return self._walk(payload, scope)
        finally:
            self._kept, self._kept_written = frozenset(), None

    def _walk(self, value: Any, scope: _Scope) -> Any:
        if isinstance(value, Written):
            return self._text(str(value), scope.written_names)
        if isinstance(value, str):
            return self._text(value, scope.names)
        if isinstance(value, dict):
            # A key may itself be an address (counts per source address): its shape is
            # enough to replace it; a key that is a name of the schema has none.
            return {self._key(k): self._member(k, v, scope) for k, v in value.items()}
        if isinstance(value, list | tuple):
            return [self._walk(v, scope) for v in value]
        return value

    def _key(self, key: Any) -> Any:
        return self._text(key, []) if isinstance(key, str) else key

    def _member(self, key: str, value: Any, scope: _Scope) -> Any:
        if isinstance(value, Verbatim):
            return str(value)
        if key in ID_KINDS:
            return self._id(value, ID_KINDS[key])
        if key in scope.as_is:
            return value
        if key in scope.written:
            names = scope.written_names
            return self._walk(value, _Scope(names, scope.as_is, scope.written, names))
        return self._walk(value, scope)

    def _id(self, value: Any, kind: str) -> Any:
        if isinstance(value, list):
            return [self._id(v, kind) for v in value]
        return self.pseudonym(value, kind) if isinstance(value, str) else value

    def _text(self, text: str, names: list[tuple[str, str]]) -> str:
        # One spelling of accented letters (macOS writes them decomposed), as the names have.
        text = _nfc(text)
        for name, kind in names:
            if text.casefold() == name.casefold():
                return self.pseudonym(name, kind)
        # A URL's user and password are replaced first and set aside, so that the e-mail
        # pattern does not then take `user-..@host` for an address.
        held: list[str] = []
        for userinfo in (_USERINFO, _BARE_USERINFO):
            if _HOLD_MARK in text:  # the text holds the mark itself: nothing is set aside
                text = userinfo.sub(self._userinfo, text)
            else:
                text = userinfo.sub(lambda m: _hold(held, self._userinfo(m)), text)
        text = _QUOTED_EMAIL.sub(lambda m: self.pseudonym(_quoted_email(m), "email"), text)
        text = _LITERAL_EMAIL.sub(lambda m: self.pseudonym(_email(m.group(0)), "email"), text)
        if _HOLD_MARK not in text:
            text = _IPV6_DOTTED.sub(lambda m: self._dotted(m.group(0), held), text)
        if self._kept_written is not None and _HOLD_MARK not in text:
            # Set aside whole, so that no pass takes a part of one (::ffff:185 of
            # ::ffff:185.190.58.151 reads as an IPv6 address).
            text = self._kept_written.sub(lambda m: _hold(held, m.group(0)), text)
        text = _DEFANGED_EMAIL.sub(self._defanged_email, text)
        text = _DEFANGED_IPV4.sub(self._defanged_address, text)
        text = _EMAIL.sub(lambda m: self.pseudonym(_email(m.group(0)), "email"), text)
        text = _DASHED_IPV4.sub(self._dashed, text)
        text = _IPV4.sub(lambda m: self._address(m.group(0)), text)
        # IPv6 before MACs: a MAC is no IPv6 address, but the last six groups of an IPv6
        # address written in full (2001:db8:0:0:0:0:0:1) look like a MAC.
        text = _IPV6.sub(lambda m: self._address(m.group(0)), text)
        text = _MAC.sub(self._mac, text)
        for name, kind in names:
            text = self._names(text, name, kind)
        return _HELD.sub(lambda m: held[len(m.group(1)) - 1], text) if held else text

    def _names(self, text: str, name: str, kind: str) -> str:
        # Whole words only: a user called "a" must not eat every letter a. Names are
        # compared without case, as Windows and most directories do. A host's name may
        # come with its domain (`pc7` as `pc7.corp.example`): the whole name is replaced.
        if kind == "host":
            # As listed, whatever the case it was written in, and with its domain if any.
            return _whole_host(name).sub(
                # The domain without case, as DNS reads it: one pseudonym per host.
                lambda m: self.pseudonym(name + m.group(0)[len(name) :].lower(), kind),
                text,
            )
        pattern = rf"(?<![\w.-]){re.escape(name)}(?![\w-]|\.[\w-])"
        return re.sub(pattern, self.pseudonym(name, kind), text, flags=re.IGNORECASE)

    def _defanged_email(self, found: re.Match[str]) -> str:
        written = found.group(0)
        plain = _refanged(written)
        if plain == written or not _EMAIL.fullmatch(plain):
            return written  # plain (left to `_EMAIL`), or no address once refanged
        return self.pseudonym(_email(plain), "email")

    def _defanged_address(self, found: re.Match[str]) -> str:
        written = found.group(0)
        plain = _refanged(written)
        if plain == written:
            return written
        replaced = self._address(plain)
        return replaced if replaced != plain else written  # 300[.]1[.]2[.]3: no address

    def _userinfo(self, found: re.Match[str]) -> str:
        user = self.pseudonym(found.group(1), "user")
        # A password is no one's identity to map back: it is dropped, not pseudonymised.
        return f"{user}:[removed]@" if found.group(2) is not None else f"{user}@"

    def _dashed(self, found: re.Match[str]) -> str:
        label, dashed = found.group(1) or "", found.group(2) or found.group(3)
        replaced = self._address(dashed.replace("-", "."))
        if not replaced.startswith("ip-"):
            return found.group(0)  # 10-20-300-4: no address
        # AWS' own `ip-` label would read ip-ip-..: the pseudonym says it already.
        if not label or label.lower().rstrip("-") == "ip":
            return replaced
        return f"{label.rstrip('-')}-{replaced}"  # host86-.. as host-ip-..

    def _mac(self, found: re.Match[str]) -> str:
        text = found.group(0)
        if found.group(1) and text.count(found.group(1)) != 5:
            return text  # seven groups or more: no MAC (an IPv6 address, a fingerprint)
        # Counted without the separators (%3A holds two hex digits of its own).
        if sum(c in string.hexdigits for c in text.replace(found.group(1) or "", "")) < 9:
            return text  # mostly one-digit groups: a position (line 1:2:3:4:5:6), no MAC
        return self.pseudonym(_mac(text), "mac")

    def _dotted(self, candidate: str, held: list[str]) -> str:
        """An IPv6 address written with an IPv4 tail: set aside whole when it is a kept
        address or stands for one through NAT64, replaced whole otherwise (the dual-stack
        ::ffff:a.b.c.d by the pseudonym of its IPv4 peer, as `address_of` reads it)."""
        try:
            address = ipaddress.IPv6Address(candidate)
        except ValueError:
            return candidate  # a group too many, a number past 255: the other passes read it
        if self._is_kept(address):
            return _hold(held, candidate)
        return self.pseudonym(str(address_of(candidate)), "ip")

    def _is_kept(self, address: ipaddress.IPv4Address | ipaddress.IPv6Address) -> bool:
        """Whether `address` is a kept one, or its dual-stack or NAT64 form."""
        if not self._kept:
            return False
        seen_as = (address_of(str(address)), ipv4_inside(address))
        return any(str(a) in self._kept for a in seen_as if a is not None)

    def _address(self, candidate: str) -> str:
        for cut in (0, 1) if candidate.startswith(":") else (0,):
            for end in (len(candidate), len(candidate) - 1):
                try:
                    address = ipaddress.ip_address(_without_leading_zeros(candidate[cut:end]))
                except ValueError:
                    continue
                if self._is_kept(address):
                    return candidate
                return candidate[:cut] + self.pseudonym(str(address), "ip") + candidate[end:]
        return candidate


def _written_as(addresses: frozenset[str]) -> re.Pattern[str] | None:
    """A pattern for `addresses` as written plainly: an IPv4 one also as the IPv4 peer of
    a dual-stack socket (::ffff:a.b.c.d); defanged and dashed spellings are left to the
    passes that read them (`_address` keeps them)."""
    if not addresses:
        return None
    v4 = [re.escape(a) for a in addresses if "." in a]
    v6 = [re.escape(a) for a in addresses if "." not in a]
    either = []
    if v4:
        either.append(rf"(?<![\d.])(?:::ffff:)?(?:{'|'.join(v4)}){_V4_END}")
    if v6:
        either.append(rf"(?<![0-9A-Za-z:])(?:{'|'.join(v6)})(?![0-9A-Za-z:])")
    return re.compile("|".join(either), re.IGNORECASE)


def is_mac(value: str) -> bool:
    """Whether `value` is one MAC address and nothing else."""
    return _MAC.fullmatch(value) is not None


# Text set aside during `_text`, as \x01, one \x02 per place in the list, \x01: control
# characters no pattern (and no name, which is a word) matches.
_HOLD_MARK = "\x01"
_HELD = re.compile("\x01(\x02+)\x01")


def _hold(held: list[str], text: str) -> str:
    held.append(text)
    return _HOLD_MARK + "\x02" * len(held) + _HOLD_MARK


def _mac(text: str) -> str:
    """A MAC address in one spelling (aa:bb:cc:dd:ee:ff), so that each device has one
    pseudonym however the log wrote it."""
    groups = re.split(r"%3a|[:.-]", text.lower())
    if len(groups) == 3:  # quads
        digits = "".join(groups)
        return ":".join(digits[i : i + 2] for i in range(0, 12, 2))
    return ":".join(g.rjust(2, "0") for g in groups)


_WRITTEN_AT = re.compile(r"&#0*64;|&#x0*40;|&commat;|\\u0040|\\x40", re.IGNORECASE)
# What `_ENCODED_LOCAL` and `_ENCODED_AT` take, in runs: a letter's UTF-8 bytes together.
_DECODED = re.compile(rf"(?:%(?:25)?(?:40|{'|'.join(_LOCAL_CODES)}|[89A-F][0-9A-F]))+", re.I)
_BYTE = re.compile(r"%(?:25)?([0-9A-F]{2})", re.IGNORECASE)


def _unescaped(found: re.Match[str]) -> str:
    codes = "".join(_BYTE.findall(found.group(0)))
    return bytes.fromhex(codes).decode("utf-8", "replace")


def _email(text: str) -> str:
    """An e-mail address in one spelling: the @ decoded, case folded (mail systems match
    addresses without case), so that each person has one pseudonym."""
    decoded = _DECODED.sub(_unescaped, _WRITTEN_AT.sub("@", text))
    return unicodedata.normalize("NFC", decoded).casefold()


def _quoted_email(found: re.Match[str]) -> str:
    """A quoted address in one spelling, so that each person has one pseudonym: unquoted
    when the quotes change nothing ("jan.peeters"@.. is jan.peeters@.., RFC 5321 4.1.2),
    else quoted with only \\ and \" escaped."""
    json = found.group("json")
    inner = json if json is not None else re.sub(r"\\(.)", r"\1", found.group("quoted"))
    if not _UNQUOTED.fullmatch(inner):
        inner = '"' + inner.replace("\\", "\\\\").replace('"', '\\"') + '"'
    return _email(f"{inner}@{found.group('domain')}")


def _without_leading_zeros(candidate: str) -> str:
    """An IPv4 address written 010.001.002.003, as 10.1.2.3 (Python refuses the zeros,
    which some logs keep); anything else as it is."""
    parts = candidate.split(".")
    if len(parts) == 4 and all(p.isdigit() for p in parts):
        return ".".join(str(int(p)) for p in parts)
    return candidate


@dataclass(frozen=True)
class _Scope:
    """What `scrub` replaces at one place in the payload."""

    names: list[tuple[str, str]]
    as_is: frozenset[str]
    written: frozenset[str]
    # The names replaced in what a person wrote: none, unless `names_everywhere`.
    written_names: list[tuple[str, str]]


def _whole_host(name: str) -> re.Pattern[str]:
    """`name` as a whole word, with any domain after it (`pc7`, `pc7.corp.example`)."""
    return re.compile(rf"(?<![\w.-]){re.escape(name)}(?:\.[A-Za-z0-9-]+)*(?![\w-])", re.IGNORECASE)


def named_in(text: str, names: Iterable[str]) -> list[str]:
    """The names (accounts, hosts) that `text` holds as whole words, in any case, a
    domain after them or not, accents composed or not."""
    text = _nfc(text)
    return sorted({name for name in names if name and _whole_host(_nfc(name)).search(text)})


def _nfc(text: str) -> str:
    """One spelling of `text`: accents composed (macOS writes them decomposed) and without
    the invisible characters a copy from a web page or a mail client leaves inside words
    (soft hyphen, zero-width space, word joiner, byte order mark), which split an address
    in two, and the part before the split left in clear."""
    if text.isascii():
        return text
    return unicodedata.normalize("NFC", _INVISIBLE.sub("", text))


_INVISIBLE = re.compile("[\u00ad\u200b\u2060\ufeff]")


def reveal(store: Store, name: str, kind: str) -> str | None:
    """The value behind pseudonym `name` of `kind`, from the entity's own lookup table."""
    if not name.startswith(f"{kind}-"):
        return None
    entry = store.get("pseudonyms", name)
    return str(entry["value"]) if entry and entry.get("kind") == kind else None


def keyed_id(key: bytes | None, *parts: object) -> str:
    """`stable_id(*parts)`, keyed with HMAC-SHA256 when there is a key: an id that leaves
    the organisation (an idempotency key, a Message-ID) then says nothing to a dictionary."""
    plain = stable_id(*parts)
    if key is None:
        return plain
    return hmac.new(key, plain.encode(), hashlib.sha256).hexdigest()[:32]
