"""Realistic-looking fake data for ``seed`` and ``scenario``, from the standard library.

A ``FakeData`` draws from a seeded ``random.Random``, so a seed reproduces the
same businesses. Everything is fictitious but shaped like the real thing: UK
phone numbers from Ofcom's drama ranges, ``.example`` email domains (RFC 2606),
IBANs with valid check digits, ``sk_test_`` Stripe keys. Values are made varied
enough (names, numbers) that a later scan for plaintext in the raw tables has
distinctive strings to look for.
"""

from __future__ import annotations

import datetime as dt
import random
import string
from decimal import Decimal

__all__ = ["FakeData", "iban_check_digits"]

FIRST_NAMES = [
    "Amelia",
    "Oliver",
    "Isla",
    "George",
    "Ava",
    "Noah",
    "Mia",
    "Arthur",
    "Ivy",
    "Leo",
    "Grace",
    "Oscar",
    "Freya",
    "Harry",
    "Lily",
    "Jack",
    "Rosie",
    "Theo",
    "Evie",
    "Finley",
    "Priya",
    "Arjun",
    "Aisha",
    "Omar",
    "Zara",
    "Kwame",
    "Mei",
    "Tomasz",
    "Siobhan",
    "Eilidh",
]
LAST_NAMES = [
    "Smith",
    "Jones",
    "Taylor",
    "Brown",
    "Williams",
    "Wilson",
    "Johnson",
    "Davies",
    "Patel",
    "Wright",
    "Robinson",
    "Thompson",
    "Evans",
    "Walker",
    "White",
    "Roberts",
    "Green",
    "Hall",
    "Wood",
    "Jackson",
    "Clarke",
    "Khan",
    "Nowak",
    "Okafor",
    "O'Brien",
    "MacLeod",
    "Chen",
    "Hughes",
    "Edwards",
    "Kaur",
]
COMPANY_WORDS = [
    "Harbour",
    "Oak",
    "Willow",
    "Granite",
    "Beacon",
    "Kestrel",
    "Meadow",
    "Copper",
    "Lantern",
    "Thistle",
    "Heron",
    "Anchor",
    "Foxglove",
    "Ember",
    "Summit",
    "Riverside",
    "Northgate",
    "Larch",
    "Bramble",
    "Quarry",
]
COMPANY_TRADES = [
    "Joinery",
    "Plumbing & Heating",
    "Design Studio",
    "Accountancy",
    "Bakery",
    "Landscaping",
    "Electrical",
    "Print Works",
    "Consulting",
    "Catering",
    "Architects",
    "Veterinary Practice",
    "Garage",
    "Dental Care",
]
COMPANY_SUFFIXES = ("Ltd", "Ltd", "LLP", "& Co", "Limited")
STREETS = [
    "High Street",
    "Station Road",
    "Church Lane",
    "Victoria Road",
    "Mill Lane",
    "Park Avenue",
    "Queen Street",
    "Kings Road",
    "The Green",
    "Orchard Close",
    "Albert Terrace",
    "Marine Parade",
]
TOWNS = (
    ("Leeds", "LS"),
    ("Bristol", "BS"),
    ("Norwich", "NR"),
    ("Cardiff", "CF"),
    ("Edinburgh", "EH"),
    ("Manchester", "M"),
    ("York", "YO"),
    ("Exeter", "EX"),
    ("Belfast", "BT"),
    ("Brighton", "BN"),
)
WORK_ITEMS = (
    "Site survey and written report",
    "Supply and fit oak worktop",
    "Replace combination boiler",
    "Quarterly bookkeeping",
    "Logo and brand guidelines",
    "Emergency call-out (evening)",
    "Garden clearance, 2 operatives",
    "Wedding cake, three tiers",
    "Rewire first floor",
    "Annual accounts preparation",
    "Consultation, per hour",
    "Materials: copper pipe and fittings",
    "Print run, 500 A5 flyers",
    "MOT and service",
)
MERCHANTS = (
    "Screwfix",
    "Travis Perkins",
    "Shell Fuel",
    "Staples",
    "Trainline",
    "Costa Coffee",
    "Wickes",
    "Premier Inn",
    "Royal Mail",
    "BT Business",
)
EXPENSE_CATEGORIES = ("materials", "travel", "office", "subsistence", "phone", "postage")
PURPOSES = (
    "Client site visit",
    "Collect materials",
    "Quote appointment",
    "Bank and post office",
    "Training course",
)
BANKS = (
    ("Barclays", "BARC"),
    ("Lloyds Bank", "LOYD"),
    ("HSBC UK", "HBUK"),
    ("NatWest", "NWBK"),
    ("Monzo Business", "MONZ"),
    ("Starling Bank", "SRLG"),
)
PAYMENT_METHODS = ("bank transfer", "card", "cash", "cheque", "Stripe")


def iban_check_digits(country: str, bban: str) -> str:
    """ISO 13616 check digits for ``country`` + ``bban``.

    >>> iban_check_digits("GB", "WEST12345698765432")
    '82'
    """
    rearranged = bban + country + "00"
    digits = "".join(str(int(ch, 36)) for ch in rearranged)
    return f"{98 - int(digits) % 97:02d}"


class FakeData:
    """A deterministic source of plausible business records."""

    def __init__(self, seed: int | None = None) -> None:
        self.rng = random.Random(seed)

    def pick(self, options: tuple[str, ...] | list[str]) -> str:
        return self.rng.choice(options)

    def digits(self, n: int) -> str:
        return "".join(self.rng.choice(string.digits) for _ in range(n))

    def token(self, n: int) -> str:
        return "".join(self.rng.choice(string.ascii_letters + string.digits) for _ in range(n))

    def person(self) -> str:
        return f"{self.pick(FIRST_NAMES)} {self.pick(LAST_NAMES)}"

    def company(self) -> str:
        return (
            f"{self.pick(COMPANY_WORDS)} {self.pick(COMPANY_TRADES)} {self.pick(COMPANY_SUFFIXES)}"
        )

    def domain(self, company: str) -> str:
        slug = "".join(ch for ch in company.split()[0].lower() if ch.isalnum())
        return f"{slug}-{self.digits(3)}.example"

    def email(self, person: str, domain: str) -> str:
        first, last = person.lower().replace("'", "").split(" ", 1)
        return f"{first}.{last}@{domain}"

    def phone(self) -> str:
        # Ofcom reserves 07700 900000-900999 and 020 7946 0000-0999 for fiction.
        if self.rng.random() < 0.5:
            return f"07700 900{self.digits(3)}"
        return f"020 7946 0{self.digits(3)}"

    def address(self) -> str:
        town, area = self.rng.choice(TOWNS)
        postcode = (
            f"{area}{self.rng.randint(1, 29)} {self.rng.randint(1, 9)}{self.token(2).upper()}"
        )
        return f"{self.rng.randint(1, 240)} {self.pick(STREETS)}\n{town}\n{postcode}"

    def utr(self) -> str:
        """A UK Unique Taxpayer Reference (10 digits)."""
        return self.digits(10)

    def vat_number(self) -> str:
        return "GB" + self.digits(9)

    def sort_code(self) -> str:
        return f"{self.digits(2)}-{self.digits(2)}-{self.digits(2)}"

    def bank(self) -> tuple[str, str, str, str, str]:
        """(bank name, sort code, account number, IBAN, BIC) that agree with each other."""
        name, code = self.rng.choice(BANKS)
        sort_code = self.sort_code()
        account = self.digits(8)
        bban = code + sort_code.replace("-", "") + account
        iban = "GB" + iban_check_digits("GB", bban) + bban
        return name, sort_code, account, iban, f"{code}GB2L"

    def stripe_key(self) -> str:
        return "sk_test_" + self.token(32)

    def refresh_token(self) -> str:
        return "1//0g" + self.token(40)

    def work_item(self) -> str:
        return self.pick(WORK_ITEMS)

    def money(self, low: int, high: int) -> Decimal:
        return Decimal(self.rng.randint(low * 100, high * 100)) / 100

    def day_within(self, days: int, *, today: dt.date | None = None) -> dt.date:
        return (today or dt.date.today()) - dt.timedelta(days=self.rng.randint(0, days))
