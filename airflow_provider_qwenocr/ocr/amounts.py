"""Currency marks around an amount, removed before a ``number:`` KIE value is parsed.

Why a full list: the typed KIE column took ``1,018.99 USD`` but loaded ``2,665.50 GBP`` as NULL, because only
CNY/USD/EUR were known. An amount on a document carries any currency: a symbol (every Unicode currency sign,
category ``Sc``: ¥ $ € £ ₩ ₹ ₽ …), an ISO 4217 code before or after it, or a Chinese unit. Only a whole
code is removed (``GBP``, not the letters of ``12 GBPX``), so a value that is not an amount still fails to
parse and stays NULL.
"""

from __future__ import annotations

import re
import unicodedata

#: ISO 4217 active codes, plus CNH (offshore yuan) and RMB, as printed on Chinese receipts.
CURRENCY_CODES = frozenset("""
AED AFN ALL AMD ANG AOA ARS AUD AWG AZN BAM BBD BDT BGN BHD BIF BMD BND BOB BRL BSD BTN BWP BYN BZD CAD CDF
CHF CLP CNY COP CRC CUP CVE CZK DJF DKK DOP DZD EGP ERN ETB EUR FJD FKP GBP GEL GHS GIP GMD GNF GTQ GYD HKD
HNL HTG HUF IDR ILS INR IQD IRR ISK JMD JOD JPY KES KGS KHR KMF KPW KRW KWD KYD KZT LAK LBP LKR LRD LSL LYD
MAD MDL MGA MKD MMK MNT MOP MRU MUR MVR MWK MXN MYR MZN NAD NGN NIO NOK NPR NZD OMR PAB PEN PGK PHP PKR PLN
PYG QAR RON RSD RUB RWF SAR SBD SCR SDG SEK SGD SHP SLE SOS SRD SSP STN SVC SYP SZL THB TJS TMT TND TOP TRY
TTD TWD TZS UAH UGX USD UYU UZS VES VND VUV WST XAF XCD XOF XPF YER ZAR ZMW ZWL CNH RMB
""".split())
_CODE = re.compile(r"(?<![A-Za-z])(" + "|".join(sorted(CURRENCY_CODES)) + r")(?![A-Za-z])", re.I)
_UNITS = re.compile(r"元|人民币|圆")


def strip_currency(text: str) -> str:
    """``text`` without currency signs, ISO codes and Chinese currency units (the amount itself untouched)."""
    text = "".join(ch for ch in text if unicodedata.category(ch) != "Sc")
    return _UNITS.sub("", _CODE.sub("", text))
