//! How single config values are spelled in the file: durations as seconds (`*_seconds` keys),
//! addresses as `ip:port`, choices and networks as text. Each rejection names the value, not the key:
//! the key and line are added where the whole tree is read ([`super::sources`]).

use std::net::SocketAddr;
use std::time::Duration;

use serde::{de::Error as _, Deserialize, Deserializer, Serializer};

/// A [`Duration`] written as whole seconds.
pub(super) mod seconds {
    use super::*;

    pub fn serialize<S: Serializer>(d: &Duration, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_u64(d.as_secs())
    }

    pub fn deserialize<'de, D: Deserializer<'de>>(d: D) -> Result<Duration, D::Error> {
        u64::deserialize(d).map(Duration::from_secs)
    }
}

/// A [`Duration`] written as seconds, fractions allowed (`upstream.linger_seconds = 0.5`).
pub(super) mod fractional_seconds {
    use super::*;

    pub fn serialize<S: Serializer>(d: &Duration, s: S) -> Result<S::Ok, S::Error> {
        if d.subsec_nanos() == 0 {
            s.serialize_u64(d.as_secs())
        } else {
            s.serialize_f64(d.as_secs_f64())
        }
    }

    pub fn deserialize<'de, D: Deserializer<'de>>(d: D) -> Result<Duration, D::Error> {
        let secs = f64::deserialize(d)?;
        Duration::try_from_secs_f64(secs)
            .map_err(|_| D::Error::custom(format!("`{secs}` is not a number of seconds")))
    }
}

/// A [`SocketAddr`] written as `ip:port`.
pub(super) mod socket_addr {
    use super::*;

    pub fn serialize<S: Serializer>(a: &SocketAddr, s: S) -> Result<S::Ok, S::Error> {
        s.collect_str(a)
    }

    pub fn deserialize<'de, D: Deserializer<'de>>(d: D) -> Result<SocketAddr, D::Error> {
        let raw = String::deserialize(d)?;
        raw.parse()
            .map_err(|_| D::Error::custom(format!("`{raw}` is not an IP:port address")))
    }
}

/// Implements serde for types written as text, through their `FromStr` (whose error is the
/// message) and `Display`.
macro_rules! serde_as_text {
    ($($t:ty),* $(,)?) => {$(
        impl serde::Serialize for $t {
            fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
                s.collect_str(self)
            }
        }

        impl<'de> serde::Deserialize<'de> for $t {
            fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
                let raw = String::deserialize(d)?;
                raw.parse().map_err(serde::de::Error::custom)
            }
        }
    )*};
}

pub(super) use serde_as_text;
