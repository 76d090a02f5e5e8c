"""Administrator passwords: Argon2id hashes and the strength policy.

Hashes: Argon2id (RFC 9106, the memory-hard winner of the Password Hashing Competition) from
``cryptography``, salted, stored as a PHC string (``$argon2id$v=19$m=19456,t=2,p=1$salt$hash``)
so the parameters travel with each hash and can be raised later without breaking old ones.
Parameters: OWASP's first Argon2id choice, 19 MiB, two passes, one lane. It costs ~0.03 s on
the development machine and ~0.1-0.15 s on a Raspberry Pi 4 - slow for a guesser, fine for a
login - and 19 MiB per check (not RFC 9106's 64 MiB or 2 GiB) lets a 2-4 GiB Pi answer a
burst of parallel logins without swapping. One lane because the matcher's other cores are
busy with matching, and lanes would only help a defender with idle cores.
Hashes written before (scrypt, ``scrypt$N$r$p$salt$hash``) still verify; the account's next
successful login replaces them (:func:`needs_rehash`). :data:`DUMMY_HASH` lets a login for a
name that is not an account (or a locked or disabled one) cost the same Argon2id as a real
one, so the time taken does not tell which names exist.

Policy: length and character classes alone let ``Password1234`` through (12 characters,
three classes, and near the top of every guessing list). What guessers actually try is lists
of common passwords, words and names, keyboard walks, sequences, repeats, dates and l33t
substitutions, combined; ``zxcvbn`` (Dropbox's estimator; the maintained Python port, MIT)
models exactly these and estimates the number of guesses, which a hand-written blocklist
would only approximate. Its lists are English, so the words guessers add for this product
and its users are given to it as well: the account name and its parts, the product's own
words, and the pinyin names and phrases at the top of Chinese password leaks (Li, Han and
Xu, "A Large-Scale Empirical Analysis of Chinese Web Passwords", USENIX Security 2014).
"""
from __future__ import annotations

import hashlib
import hmac
import re
import secrets
import threading

from cryptography.exceptions import InvalidKey
from cryptography.hazmat.primitives.kdf.argon2 import Argon2id

MIN_PASSWORD_LEN = 12
MAX_PASSWORD_LEN = 1024  # the hash's cost is independent of length, but bound the input anyway
MIN_CHARACTER_CLASSES = 3
# a passphrase of ordinary words is strong without digits or symbols (NIST SP 800-63B
# 5.1.1.2 advises against composition rules); from this length the class rule is waived
# and the strength estimate alone decides
PASSPHRASE_LEN = 20
# zxcvbn score 4 means an estimated 10^10 guesses or more. Score 3 (10^8) still admits
# word + year patterns such as "Welcome2024!!"; every account here administers biometric
# data, and a copy of accounts.db taken with its key would face an offline attack
MIN_STRENGTH_SCORE = 4
STRENGTH_MAX_CHARS = 72  # zxcvbn refuses longer input; a strong prefix is a strong password
MIN_NAME_PART = 4  # parts of an account name this long may not appear in its password
# Argon2id (OWASP password storage cheat sheet, first choice; see the module docstring)
ARGON2_M_KIB, ARGON2_T, ARGON2_P, HASH_LEN, SALT_BYTES = 19 * 1024, 2, 1, 32, 16
ARGON2_PREFIX = "$argon2id$"
# stored parameters above these are refused unchecked: a planted hash must not cost a login GiBs
MAX_ARGON2_M_KIB, MAX_ARGON2_T, MAX_ARGON2_P = 1024 * 1024, 16, 8
# the hashes written before Argon2id: scrypt at N=2^15, r=8 (32 MiB); verified, then replaced
SCRYPT_N, SCRYPT_R, SCRYPT_P, SCRYPT_LEN = 2 ** 15, 8, 1, 32
SCRYPT_MAXMEM = 64 * 1024 * 1024  # also the bound on a stored hash's cost (more raises: refused)

# Words a guesser adds for this appliance and its users, most likely first (zxcvbn takes the
# position as the guess count). Lower case; zxcvbn itself tries capitals and l33t forms.
LOCAL_WORDS = (
    # pinyin phrases and numbers ("I love you", 520 / 1314: "I love you for a lifetime")
    "woaini", "5201314", "1314520", "1314", "520", "woaini1314", "aini", "iloveyou", "woaiwojia",
    "mima", "wodemima", "nihao", "zhongguo", "china",
    # the most common full names and surnames in pinyin
    "zhangwei", "wangwei", "wangfang", "liwei", "wangxiuying", "lixiuying", "lina", "zhangxiuying",
    "liuwei", "zhangmin", "lijing", "zhangli", "wangjing", "liqiang", "wangqiang", "zhangjing",
    "wang", "zhang", "liu", "chen", "yang", "huang", "zhao", "zhou", "sun", "zhu", "guo", "lin", "gao", "luo",
    # cities and brands
    "beijing", "shanghai", "shenzhen", "guangzhou", "hangzhou", "chengdu", "huawei", "xiaomi",
    "baidu", "tencent", "alibaba", "taobao", "weixin",
    # this product and its roles
    "appliance", "face", "renlian", "menjin", "door", "gate", "access", "matcher", "admin",
    "administrator", "security", "operator", "auditor", "system",
)

_B64_ZERO_SALT, _B64_ZERO_HASH = "A" * 22, "A" * 43  # unpadded base64 of 16 and 32 zero bytes
# a hash no password matches, with today's parameters: checking against it costs what a real check costs
DUMMY_HASH = f"{ARGON2_PREFIX}v=19$m={ARGON2_M_KIB},t={ARGON2_T},p={ARGON2_P}${_B64_ZERO_SALT}${_B64_ZERO_HASH}"
_PHC = re.compile(r"\$argon2id\$v=19\$m=(\d{1,9}),t=(\d{1,4}),p=(\d{1,3})\$[A-Za-z0-9+/]+\$[A-Za-z0-9+/]+")
# zxcvbn keeps the caller's words in a module-level dictionary while it scores: one at a time
_ESTIMATOR_LOCK = threading.Lock()


def hash_password(password: str, salt: bytes | None = None) -> str:
    """A new Argon2id hash with today's parameters (PHC string)."""
    kdf = Argon2id(salt=salt or secrets.token_bytes(SALT_BYTES), length=HASH_LEN, iterations=ARGON2_T,
                   lanes=ARGON2_P, memory_cost=ARGON2_M_KIB)
    return kdf.derive_phc_encoded(password.encode("utf-8"))


def scrypt_hash(password: str, salt: bytes | None = None, n: int = SCRYPT_N) -> str:
    """A hash in the old scrypt format: only to test that such hashes still verify and get replaced."""
    salt = salt or secrets.token_bytes(SALT_BYTES)
    digest = hashlib.scrypt(password.encode("utf-8"), salt=salt, n=n, r=SCRYPT_R, p=SCRYPT_P,
                            maxmem=SCRYPT_MAXMEM, dklen=SCRYPT_LEN)
    return f"scrypt${n}${SCRYPT_R}${SCRYPT_P}${salt.hex()}${digest.hex()}"


def check_password(password: str, stored: str) -> bool:
    """True when ``password`` matches ``stored`` (Argon2id, or a legacy scrypt hash). A hash
    whose parameters are out of bounds is refused before any work (it cannot come from here)."""
    if len(password) > MAX_PASSWORD_LEN:
        return False
    if stored.startswith(ARGON2_PREFIX):
        if _argon2_params(stored) is None:
            return False
        try:
            Argon2id.verify_phc_encoded(password.encode("utf-8"), stored)
        except (InvalidKey, ValueError):
            return False
        return True
    return _check_scrypt(password, stored)


def needs_rehash(stored: str) -> bool:
    """True when ``stored`` is not an Argon2id hash with today's parameters (or stronger)."""
    params = _argon2_params(stored) if stored.startswith(ARGON2_PREFIX) else None
    return params is None or params < (ARGON2_M_KIB, ARGON2_T, ARGON2_P)


def _argon2_params(stored: str) -> tuple[int, int, int] | None:
    """(m, t, p) of a PHC Argon2id string, or None when malformed or beyond the bounds."""
    match = _PHC.fullmatch(stored)
    if match is None:
        return None
    m, t, p = (int(v) for v in match.groups())
    if not (m <= MAX_ARGON2_M_KIB and t <= MAX_ARGON2_T and 1 <= p <= MAX_ARGON2_P):
        return None
    return m, t, p


def _check_scrypt(password: str, stored: str) -> bool:
    try:
        scheme, n, r, p, salt, digest = stored.split("$")
        if scheme != "scrypt":
            return False
        actual = hashlib.scrypt(password.encode("utf-8"), salt=bytes.fromhex(salt), n=int(n), r=int(r), p=int(p),
                                maxmem=SCRYPT_MAXMEM, dklen=len(digest) // 2)
    except ValueError:
        return False
    return hmac.compare_digest(actual.hex(), digest)


def password_problems(password: str, account: str = "") -> list[str]:
    """Why a password is refused (empty when it passes the policy). The reasons never quote
    the password."""
    problems = []
    if len(password) < MIN_PASSWORD_LEN:
        problems.append(f"at least {MIN_PASSWORD_LEN} characters")
    if len(password) > MAX_PASSWORD_LEN:
        return problems + [f"at most {MAX_PASSWORD_LEN} characters"]
    classes = sum(any(test(c) for c in password) for test in
                  (str.islower, str.isupper, str.isdigit, lambda c: not c.isalnum()))
    if classes < MIN_CHARACTER_CLASSES and len(password) < PASSPHRASE_LEN:
        problems.append(f"characters from {MIN_CHARACTER_CLASSES} of: lower case, upper case, digits, symbols "
                        f"(or a passphrase of {PASSPHRASE_LEN} characters or more)")
    if _contains_name(password, account):
        problems.append("must not contain the account name or a part of it")
    score, warning = _strength(password, account)
    if score < MIN_STRENGTH_SCORE:
        hint = f" ({warning.rstrip('.')})" if warning else ""
        problems.append(f"too easy to guess{hint}: use a longer password or a passphrase of uncommon words")
    return problems


def _name_parts(account: str) -> list[str]:
    return [part for part in re.split(r"[^a-z0-9]+", account.lower()) if part]


def _contains_name(password: str, account: str) -> bool:
    """The whole name (separators ignored: "zhang.san" is in "Zhang-San-1990!") or any part of
    it of MIN_NAME_PART characters or more."""
    if not account:
        return False
    flat = re.sub(r"[^a-z0-9]", "", password.lower())
    parts = _name_parts(account)
    whole = "".join(parts)
    return bool(whole and whole in flat) or any(len(p) >= MIN_NAME_PART and p in flat for p in parts)


def _strength(password: str, account: str) -> tuple[int, str]:
    """zxcvbn's score (0-4) and its warning, with the account name and the local words."""
    from zxcvbn import zxcvbn

    words = [account.lower(), *_name_parts(account), *LOCAL_WORDS] if account else list(LOCAL_WORDS)
    with _ESTIMATOR_LOCK:
        result = zxcvbn(password[:STRENGTH_MAX_CHARS], user_inputs=words)
    return int(result["score"]), str(result["feedback"].get("warning") or "")
