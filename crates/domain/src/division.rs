//! Administrative divisions (行政区划), GB/T 2260 six-digit codes.

use std::fmt;
use std::str::FromStr;

use crate::code::CodeError;

/// The level of a division in the "five-level application" (五级应用). Townships have
/// nine-digit codes (GB/T 10114) and are not `AdmDivCode`s.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum DivisionLevel {
    /// 中央, code 100000 as the treasury systems write it.
    Central,
    /// 省级, `PP0000`.
    Province,
    /// 地市级, `PPCC00`.
    City,
    /// 县级, `PPCCXX`.
    County,
}

/// A six-digit administrative division code (`430000` 湖南省, `430100` 长沙市,
/// `430102` 芙蓉区) with its parent chain.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct AdmDivCode([u8; 6]);

/// The province-level prefixes GB/T 2260 assigns.
const PROVINCES: &[u8] = &[
    11, 12, 13, 14, 15, 21, 22, 23, 31, 32, 33, 34, 35, 36, 37, 41, 42, 43, 44, 45, 46, 50, 51, 52,
    53, 54, 61, 62, 63, 64, 65, 71, 81, 82,
];

impl AdmDivCode {
    /// The code of the central level, 中央.
    pub const CENTRAL: AdmDivCode = AdmDivCode(*b"100000");

    pub fn as_str(&self) -> &str {
        // Only ASCII digits are ever stored.
        std::str::from_utf8(&self.0).expect("ASCII digits")
    }

    fn pair(&self, i: usize) -> u8 {
        (self.0[i] - b'0') * 10 + (self.0[i + 1] - b'0')
    }

    pub fn level(&self) -> DivisionLevel {
        if *self == Self::CENTRAL {
            DivisionLevel::Central
        } else if self.pair(2) == 0 {
            DivisionLevel::Province
        } else if self.pair(4) == 0 {
            DivisionLevel::City
        } else {
            DivisionLevel::County
        }
    }

    /// The division directly above: county → city (or province when the county is
    /// directly under it), city → province, province → none. Central has no parent.
    pub fn parent(&self) -> Option<AdmDivCode> {
        let mut up = self.0;
        match self.level() {
            DivisionLevel::Central | DivisionLevel::Province => return None,
            DivisionLevel::City => up[2..].copy_from_slice(b"0000"),
            DivisionLevel::County => up[4..].copy_from_slice(b"00"),
        }
        Some(AdmDivCode(up))
    }

    /// The chain from this division up to its province: `430102 → 430100 → 430000`.
    pub fn chain(&self) -> Vec<AdmDivCode> {
        std::iter::successors(Some(*self), AdmDivCode::parent).collect()
    }

    /// The province this division belongs to (itself for a province or central).
    pub fn province(&self) -> AdmDivCode {
        *self.chain().last().expect("chain holds at least self")
    }

    /// True when `self` is `other` or lies under it.
    pub fn is_within(&self, other: &AdmDivCode) -> bool {
        self.chain().contains(other)
    }
}

impl FromStr for AdmDivCode {
    type Err = CodeError;

    fn from_str(text: &str) -> Result<AdmDivCode, CodeError> {
        let bytes: [u8; 6] = text
            .as_bytes()
            .try_into()
            .map_err(|_| CodeError::Format("six digits"))?;
        if !bytes.iter().all(u8::is_ascii_digit) {
            return Err(CodeError::Format("six digits"));
        }
        let code = AdmDivCode(bytes);
        if code != Self::CENTRAL && !PROVINCES.contains(&code.pair(0)) {
            return Err(CodeError::Unknown("province prefix of GB/T 2260"));
        }
        Ok(code)
    }
}

impl fmt::Display for AdmDivCode {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn code(s: &str) -> AdmDivCode {
        s.parse().unwrap()
    }

    #[test]
    fn levels_and_chain() {
        assert_eq!(code("430000").level(), DivisionLevel::Province);
        assert_eq!(code("430100").level(), DivisionLevel::City);
        assert_eq!(code("430102").level(), DivisionLevel::County);
        assert_eq!(code("100000").level(), DivisionLevel::Central);
        let chain: Vec<String> = code("430102")
            .chain()
            .iter()
            .map(|c| c.to_string())
            .collect();
        assert_eq!(chain, ["430102", "430100", "430000"]);
        assert_eq!(code("430000").parent(), None);
        assert_eq!(code("100000").parent(), None);
        assert!(code("430102").is_within(&code("430000")));
        assert!(!code("430102").is_within(&code("440000")));
        assert_eq!(code("430102").province(), code("430000"));
    }

    #[test]
    fn refuses_bad_codes() {
        for bad in [
            "43000",
            "4300000",
            "43000A",
            "990000",
            "000000",
            "４３００００",
        ] {
            assert!(bad.parse::<AdmDivCode>().is_err(), "{bad}");
        }
    }
}
