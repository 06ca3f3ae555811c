//! A small macro for bit-flag newtypes whose unknown bits cannot be set.

/// Declares a `u16` bit-flag newtype with the given flags.
///
/// The field is private: a value holds only known bits, because the only ways in are the
/// constants, `|`, and [`from_bits`](#method.from_bits), which refuses unknown bits.
macro_rules! bit_flags {
    (
        $(#[$meta:meta])*
        pub struct $name:ident {
            $( $(#[$flag_meta:meta])* const $flag:ident = $bit:expr; )+
        }
    ) => {
        $(#[$meta])*
        #[derive(Clone, Copy, Default, PartialEq, Eq, Hash)]
        pub struct $name(u16);

        impl $name {
            /// No flag set.
            pub const NONE: Self = Self(0);
            $( $(#[$flag_meta])* pub const $flag: Self = Self(1 << $bit); )+

            /// Every known bit.
            const KNOWN: u16 = 0 $( | (1 << $bit) )+;

            /// The flags of `bits`, or `None` if a bit no flag uses is set.
            #[must_use]
            pub const fn from_bits(bits: u16) -> Option<Self> {
                if bits & !Self::KNOWN == 0 { Some(Self(bits)) } else { None }
            }

            /// The raw bits, for storage.
            #[must_use]
            pub const fn bits(self) -> u16 {
                self.0
            }

            /// Whether every flag of `other` is set in `self`.
            #[must_use]
            pub const fn contains(self, other: Self) -> bool {
                self.0 & other.0 == other.0
            }

            /// `self` with the flags of `other` added.
            #[must_use]
            pub const fn union(self, other: Self) -> Self {
                Self(self.0 | other.0)
            }

            /// `self` with the flags of `other` removed.
            #[must_use]
            pub const fn difference(self, other: Self) -> Self {
                Self(self.0 & !other.0)
            }
        }

        impl ::std::ops::BitOr for $name {
            type Output = Self;
            fn bitor(self, other: Self) -> Self {
                self.union(other)
            }
        }

        impl ::std::ops::BitOrAssign for $name {
            fn bitor_assign(&mut self, other: Self) {
                *self = self.union(other);
            }
        }

        impl ::std::fmt::Debug for $name {
            fn fmt(&self, f: &mut ::std::fmt::Formatter<'_>) -> ::std::fmt::Result {
                let mut first = true;
                f.write_str(concat!(stringify!($name), "("))?;
                $(
                    if self.contains(Self::$flag) {
                        if !first { f.write_str(" | ")?; }
                        f.write_str(stringify!($flag))?;
                        first = false;
                    }
                )+
                if first { f.write_str("NONE")?; }
                f.write_str(")")
            }
        }
    };
}

pub(crate) use bit_flags;
