//! Compact country and continent codes, and the built-in ISO-3166 country ->
//! continent table used when a geo database carries no continent.

use std::fmt;

/// An ISO-3166 alpha-2 country code packed into a `u16` index (0..676), so
/// per-country tables are flat arrays and lookups never hash or allocate.
#[derive(Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct Country(u16);

/// Number of distinct two-letter codes; the size of per-country arrays.
pub const COUNTRY_SLOTS: usize = 26 * 26;

impl Country {
    /// Parses exactly two ASCII letters (either case).
    pub fn parse(code: &str) -> Option<Country> {
        Self::from_bytes(code.as_bytes())
    }

    /// Like [`Country::parse`] over raw bytes (no UTF-8 check needed).
    pub fn from_bytes(code: &[u8]) -> Option<Country> {
        match code {
            [a, b] if a.is_ascii_alphabetic() && b.is_ascii_alphabetic() => {
                let a = a.to_ascii_uppercase() - b'A';
                let b = b.to_ascii_uppercase() - b'A';
                Some(Country(u16::from(a) * 26 + u16::from(b)))
            }
            _ => None,
        }
    }

    /// Index into a [`COUNTRY_SLOTS`]-long table.
    pub fn index(self) -> usize {
        usize::from(self.0)
    }

    /// The two upper-case letters.
    pub fn code(self) -> [u8; 2] {
        // Both quotients are < 26 by construction, so the casts cannot truncate.
        [b'A' + (self.0 / 26) as u8, b'A' + (self.0 % 26) as u8]
    }

    /// The code as a `&'static str`, for labels and logs without allocating.
    pub fn as_str(self) -> &'static str {
        let i = self.index() * 2;
        // ALL_CODES holds every pair in index order, so this slice is always
        // two ASCII letters on a char boundary.
        ALL_CODES.get(i..i + 2).unwrap_or("??")
    }

    /// The continent of this country from the built-in ISO-3166 table.
    pub fn builtin_continent(self) -> Option<Continent> {
        BUILTIN_CONTINENT.get(self.index()).copied().flatten()
    }
}

impl fmt::Debug for Country {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

impl fmt::Display for Country {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// The seven continent codes used by GeoIP2 databases.
#[derive(Clone, Copy, PartialEq, Eq, Hash, Debug, PartialOrd, Ord)]
pub enum Continent {
    Africa,
    Antarctica,
    Asia,
    Europe,
    NorthAmerica,
    Oceania,
    SouthAmerica,
}

impl Continent {
    pub const ALL: [Continent; 7] = [
        Continent::Africa,
        Continent::Antarctica,
        Continent::Asia,
        Continent::Europe,
        Continent::NorthAmerica,
        Continent::Oceania,
        Continent::SouthAmerica,
    ];

    /// Parses a GeoIP2 continent code (`AF`, `AN`, `AS`, `EU`, `NA`, `OC`, `SA`).
    pub fn parse(code: &str) -> Option<Continent> {
        Self::from_bytes(code.as_bytes())
    }

    pub fn from_bytes(code: &[u8]) -> Option<Continent> {
        Some(match code {
            b"AF" | b"af" => Continent::Africa,
            b"AN" | b"an" => Continent::Antarctica,
            b"AS" | b"as" => Continent::Asia,
            b"EU" | b"eu" => Continent::Europe,
            b"NA" | b"na" => Continent::NorthAmerica,
            b"OC" | b"oc" => Continent::Oceania,
            b"SA" | b"sa" => Continent::SouthAmerica,
            _ => return None,
        })
    }

    pub fn code(self) -> &'static str {
        match self {
            Continent::Africa => "AF",
            Continent::Antarctica => "AN",
            Continent::Asia => "AS",
            Continent::Europe => "EU",
            Continent::NorthAmerica => "NA",
            Continent::Oceania => "OC",
            Continent::SouthAmerica => "SA",
        }
    }

    pub fn index(self) -> usize {
        self as usize
    }
}

impl fmt::Display for Continent {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.code())
    }
}

/// Every two-letter pair in index order ("AAAB..ZZ"), so `Country::as_str`
/// can hand out `&'static str` slices.
static ALL_CODES: &str = {
    const BYTES: [u8; COUNTRY_SLOTS * 2] = {
        let mut out = [0u8; COUNTRY_SLOTS * 2];
        let mut i = 0;
        while i < COUNTRY_SLOTS {
            out[i * 2] = b'A' + (i / 26) as u8;
            out[i * 2 + 1] = b'A' + (i % 26) as u8;
            i += 1;
        }
        out
    };
    match std::str::from_utf8(&BYTES) {
        Ok(s) => s,
        Err(_) => panic!("country code table is ASCII"),
    }
};

/// ISO-3166-1 alpha-2 codes grouped by continent, as GeoIP2 databases assign
/// them (e.g. CY and TR are Asia, RU is Europe, XK is used for Kosovo).
const CONTINENT_MEMBERS: [(Continent, &str); 7] = [
    (
        Continent::Africa,
        "AO BF BI BJ BW CD CF CG CI CM CV DJ DZ EG EH ER ET GA GH GM GN GQ GW KE KM LR LS LY MA \
         MG ML MR MU MW MZ NA NE NG RE RW SC SD SH SL SN SO SS ST SZ TD TG TN TZ UG YT ZA ZM ZW",
    ),
    (Continent::Antarctica, "AQ BV GS HM TF"),
    (
        Continent::Asia,
        "AE AF AM AZ BD BH BN BT CC CN CX CY GE HK ID IL IN IO IQ IR JO JP KG KH KP KR KW KZ LA \
         LB LK MM MN MO MV MY NP OM PH PK PS QA SA SG SY TH TJ TL TM TR TW UZ VN YE",
    ),
    (
        Continent::Europe,
        "AD AL AT AX BA BE BG BY CH CZ DE DK EE ES FI FO FR GB GG GI GR HR HU IE IM IS IT JE LI \
         LT LU LV MC MD ME MK MT NL NO PL PT RO RS RU SE SI SJ SK SM UA VA XK",
    ),
    (
        Continent::NorthAmerica,
        "AG AI AW BB BL BM BQ BS BZ CA CR CU CW DM DO GD GL GP GT HN HT JM KN KY LC MF MQ MS MX \
         NI PA PM PR SV SX TC TT US VC VG VI",
    ),
    (
        Continent::Oceania,
        "AS AU CK FJ FM GU KI MH MP NC NF NR NU NZ PF PG PN PW SB TK TO TV UM VU WF WS",
    ),
    (
        Continent::SouthAmerica,
        "AR BO BR CL CO EC FK GF GY PE PY SR UY VE",
    ),
];

static BUILTIN_CONTINENT: [Option<Continent>; COUNTRY_SLOTS] = {
    let mut table = [None; COUNTRY_SLOTS];
    let mut c = 0;
    while c < CONTINENT_MEMBERS.len() {
        let (continent, members) = CONTINENT_MEMBERS[c];
        let bytes = members.as_bytes();
        let mut i = 0;
        while i + 1 < bytes.len() {
            let a = bytes[i];
            let b = bytes[i + 1];
            if a.is_ascii_uppercase() && b.is_ascii_uppercase() {
                let idx = (a - b'A') as usize * 26 + (b - b'A') as usize;
                table[idx] = Some(continent);
                i += 2;
            } else {
                i += 1;
            }
        }
        c += 1;
    }
    table
};

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn country_round_trips() {
        let de = Country::parse("de").unwrap();
        assert_eq!(de.as_str(), "DE");
        assert_eq!(&de.code(), b"DE");
        assert_eq!(Country::parse("ZZ").unwrap().as_str(), "ZZ");
        assert!(Country::parse("D").is_none());
        assert!(Country::parse("D1").is_none());
        assert!(Country::parse("DEU").is_none());
    }

    #[test]
    fn builtin_continents() {
        let c = |s: &str| Country::parse(s).unwrap().builtin_continent();
        assert_eq!(c("DE"), Some(Continent::Europe));
        assert_eq!(c("CN"), Some(Continent::Asia));
        assert_eq!(c("HK"), Some(Continent::Asia));
        assert_eq!(c("BR"), Some(Continent::SouthAmerica));
        assert_eq!(c("ZA"), Some(Continent::Africa));
        assert_eq!(c("AU"), Some(Continent::Oceania));
        assert_eq!(c("US"), Some(Continent::NorthAmerica));
        assert_eq!(c("AQ"), Some(Continent::Antarctica));
        assert_eq!(c("XX"), None);
    }

    #[test]
    fn builtin_table_has_no_duplicates() {
        let mut seen = std::collections::HashSet::new();
        for (_, members) in CONTINENT_MEMBERS {
            for code in members.split_whitespace() {
                assert_eq!(code.len(), 2, "{code}");
                assert!(seen.insert(code), "{code} listed twice");
            }
        }
        assert!(seen.len() > 240, "{} countries", seen.len());
    }
}
