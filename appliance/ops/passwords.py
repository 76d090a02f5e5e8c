"""Administrator passwords: scrypt hashes and the strength policy.

Hashes: scrypt from the standard library, salted, parameters stored with each hash so they
can be raised later without breaking old ones. :data:`DUMMY_HASH` lets a login for a name
that is not an account (or a locked or disabled one) cost the same scrypt as a real one, so
the time taken does not tell which names exist.

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

MIN_PASSWORD_LEN = 12
MAX_PASSWORD_LEN = 1024  # scrypt cost is independent of length, but bound the input anyway
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
# scrypt at N=2^15, r=8: 32 MiB and ~0.1 s per check on a Pi 4 - slow for guessing, fine for a login
SCRYPT_N, SCRYPT_R, SCRYPT_P, SCRYPT_LEN, SALT_BYTES = 2 ** 15, 8, 1, 32, 16
SCRYPT_MAXMEM = 64 * 1024 * 1024

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

# a hash no password matches, with today's parameters: checking against it costs what a real check costs
DUMMY_HASH = f"scrypt${SCRYPT_N}${SCRYPT_R}${SCRYPT_P}${'00' * SALT_BYTES}${'00' * SCRYPT_LEN}"
# zxcvbn keeps the caller's words in a module-level dictionary while it scores: one at a time
_ESTIMATOR_LOCK = threading.Lock()


def hash_password(password: str, salt: bytes | None = None, n: int = SCRYPT_N) -> str:
    salt = salt or secrets.token_bytes(SALT_BYTES)
    digest = hashlib.scrypt(password.encode("utf-8"), salt=salt, n=n, r=SCRYPT_R, p=SCRYPT_P,
                            maxmem=SCRYPT_MAXMEM, dklen=SCRYPT_LEN)
    return f"scrypt${n}${SCRYPT_R}${SCRYPT_P}${salt.hex()}${digest.hex()}"


def check_password(password: str, stored: str) -> bool:
    try:
        scheme, n, r, p, salt, digest = stored.split("$")
    except ValueError:
        return False
    if scheme != "scrypt" or len(password) > MAX_PASSWORD_LEN:
        return False
    actual = hashlib.scrypt(password.encode("utf-8"), salt=bytes.fromhex(salt), n=int(n), r=int(r), p=int(p),
                            maxmem=SCRYPT_MAXMEM, dklen=len(digest) // 2)
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
