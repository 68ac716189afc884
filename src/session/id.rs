//! A session's `connection_id`: self-describing and signed, so any replica can tell which replica
//! owns a session without asking anyone (issue 18; scale-h2-proxies.md 1.3).
//!
//! Layout: `e1` + base64url (no padding) of 24 bytes = 34 characters, inside the 36 the SDKs
//! allow:
//!
//! ```text
//! owner IPv4 (4) | owner peer port (2) | boot epoch (2) | random (8) | HMAC-SHA256, truncated (8)
//! ```
//!
//! The owner is the replica's advertised peer address (`cluster.advertise`, `cluster.peer_listen`'s
//! port); `0.0.0.0:0` when clustering is off. The epoch is random per process start, so a replica
//! restarted on the same address does not claim its predecessor's ids. The MAC is keyed from the
//! app secrets (HMAC-SHA256 of the secret with the label `stream-edge/conn-id/v1`), so no new
//! secret is needed; every secret of every app verifies (rotation: new first, old second), the
//! first secret of the session's app signs. A client cannot forge an id that steers a replica to
//! an address of its choosing, nor probe ids.

use std::net::{Ipv4Addr, SocketAddrV4};
use std::sync::{Arc, RwLock};

use base64::Engine;
use hmac::{Hmac, Mac};
use sha2::Sha256;

use super::SessionId;

type HmacSha256 = Hmac<Sha256>;

const PREFIX: &str = "e1";
const SIGNED: usize = 16;
const MAC: usize = 8;
const RAW: usize = SIGNED + MAC;
/// The length of every id this gateway mints.
pub const ID_LEN: usize = PREFIX.len() + (RAW * 4).div_ceil(3);
const ID_LABEL: &[u8] = b"stream-edge/conn-id/v1";
const PEER_LABEL: &[u8] = b"stream-edge/peer/v1";

/// The keys one app secret gives.
#[derive(Clone)]
struct SecretKeys {
    id: [u8; 32],
    peer: PeerKey,
}

/// The key that signs calls between replicas for one app secret.
#[derive(Clone, PartialEq, Eq)]
pub struct PeerKey(pub [u8; 32]);

impl std::fmt::Debug for PeerKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("PeerKey(***)")
    }
}

/// Where an id's session lives, as far as the id itself says.
#[derive(Debug, PartialEq, Eq)]
pub enum Owner {
    /// Minted by this process.
    Here,
    /// Minted by another replica: its peer address, and the peer key of the secret that signed
    /// the id (the forwarding call is signed with it).
    Peer(SocketAddrV4, PeerKey),
    /// Minted at this address by an earlier process: that session is gone.
    Stale,
    /// Not an id any replica minted (malformed, or its MAC does not verify).
    Invalid,
}

/// Mints and checks `connection_id`s.
pub struct Ids {
    owner: SocketAddrV4,
    epoch: [u8; 2],
    /// Per app (in configuration order): its secrets' keys, the first signs.
    keys: RwLock<Vec<(Arc<str>, Vec<SecretKeys>)>>,
}

fn derive(secret: &str, label: &[u8]) -> [u8; 32] {
    let mut mac = <HmacSha256 as Mac>::new_from_slice(secret.as_bytes())
        .unwrap_or_else(|_| unreachable!("HMAC takes keys of any length"));
    mac.update(label);
    mac.finalize().into_bytes().into()
}

fn keys_of(apps: &[crate::config::AppConfig]) -> Vec<(Arc<str>, Vec<SecretKeys>)> {
    apps.iter()
        .map(|a| {
            let keys = a
                .secrets
                .iter()
                .map(|s| SecretKeys {
                    id: derive(&s.0, ID_LABEL),
                    peer: PeerKey(derive(&s.0, PEER_LABEL)),
                })
                .collect();
            (Arc::from(a.api_key.as_str()), keys)
        })
        .collect()
}

fn mac(key: &[u8; 32], signed: &[u8]) -> HmacSha256 {
    let mut m = <HmacSha256 as Mac>::new_from_slice(key)
        .unwrap_or_else(|_| unreachable!("HMAC takes keys of any length"));
    m.update(signed);
    m
}

impl Ids {
    /// `owner`: this replica's advertised peer address; `None` when clustering is off.
    pub fn new(owner: Option<SocketAddrV4>, apps: &[crate::config::AppConfig]) -> Self {
        Ids {
            owner: owner.unwrap_or(SocketAddrV4::new(Ipv4Addr::UNSPECIFIED, 0)),
            epoch: rand::random(),
            keys: RwLock::new(keys_of(apps)),
        }
    }

    /// Replaces the keys (config reload): ids signed by a removed secret stop verifying.
    pub fn set_apps(&self, apps: &[crate::config::AppConfig]) {
        *self.keys.write().unwrap_or_else(|p| p.into_inner()) = keys_of(apps);
    }

    /// A fresh id for a session of `app`.
    pub fn mint(&self, app: &str) -> SessionId {
        let mut raw = [0u8; RAW];
        raw[..4].copy_from_slice(&self.owner.ip().octets());
        raw[4..6].copy_from_slice(&self.owner.port().to_be_bytes());
        raw[6..8].copy_from_slice(&self.epoch);
        raw[8..SIGNED].copy_from_slice(&rand::random::<[u8; 8]>());
        let keys = self.keys.read().unwrap_or_else(|p| p.into_inner());
        // An app always has a secret once configured (validation); without one the id is simply
        // unsigned and verifies nowhere, which ends in code 46 rather than a panic.
        if let Some(k) = keys
            .iter()
            .find(|(a, _)| &**a == app)
            .and_then(|(_, ks)| ks.first())
        {
            let tag = mac(&k.id, &raw[..SIGNED]).finalize().into_bytes();
            raw[SIGNED..].copy_from_slice(&tag[..MAC]);
        }
        let mut id = String::with_capacity(ID_LEN);
        id.push_str(PREFIX);
        base64::engine::general_purpose::URL_SAFE_NO_PAD.encode_string(raw, &mut id);
        Arc::from(id)
    }

    /// Where the session `id` lives, by the id alone. With `app` (the call's `api_key`), only that
    /// app's secrets verify it: one app's secret never vouches for an id of another app (several
    /// apps may share a gateway, and each knows its own secret).
    pub fn owner(&self, id: &str, app: Option<&str>) -> Owner {
        let Some(body) = id.strip_prefix(PREFIX).filter(|_| id.len() == ID_LEN) else {
            return Owner::Invalid;
        };
        let mut raw = [0u8; RAW];
        match base64::engine::general_purpose::URL_SAFE_NO_PAD.decode_slice(body, &mut raw) {
            Ok(RAW) => {}
            _ => return Owner::Invalid,
        }
        let keys = self.keys.read().unwrap_or_else(|p| p.into_inner());
        let signer = keys
            .iter()
            .filter(|(a, _)| app.is_none_or(|app| &**a == app))
            .flat_map(|(_, ks)| ks.iter())
            .find(|k| {
                mac(&k.id, &raw[..SIGNED])
                    .verify_truncated_left(&raw[SIGNED..])
                    .is_ok()
            });
        let Some(signer) = signer else {
            return Owner::Invalid;
        };
        let ip = Ipv4Addr::new(raw[0], raw[1], raw[2], raw[3]);
        let owner = SocketAddrV4::new(ip, u16::from_be_bytes([raw[4], raw[5]]));
        if owner != self.owner {
            Owner::Peer(owner, signer.peer.clone())
        } else if raw[6..8] == self.epoch {
            Owner::Here
        } else {
            Owner::Stale
        }
    }

    /// The peer keys of `app` (a forwarded call for a session of that app verifies with any of
    /// them); every app's with `None`.
    pub fn peer_keys(&self, app: Option<&str>) -> Vec<PeerKey> {
        let keys = self.keys.read().unwrap_or_else(|p| p.into_inner());
        keys.iter()
            .filter(|(a, _)| app.is_none_or(|app| &**a == app))
            .flat_map(|(_, ks)| ks.iter().map(|k| k.peer.clone()))
            .collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::{AppConfig, Secret};

    fn app(key: &str, secrets: &[&str]) -> AppConfig {
        AppConfig {
            api_key: key.into(),
            secrets: secrets.iter().map(|s| Secret((*s).into())).collect(),
        }
    }

    fn addr(port: u16) -> Option<SocketAddrV4> {
        Some(SocketAddrV4::new(Ipv4Addr::new(10, 0, 0, 7), port))
    }

    #[test]
    fn ids_fit_the_sdks_and_name_their_owner() {
        let a = Ids::new(addr(9091), &[app("k", &["s1"])]);
        let b = Ids::new(addr(9092), &[app("k", &["s1"])]);
        let id = a.mint("k");
        assert_eq!(id.len(), ID_LEN);
        assert!(id.len() <= 36);
        assert!(id
            .bytes()
            .all(|c| c.is_ascii_alphanumeric() || c == b'-' || c == b'_'));
        assert_eq!(a.owner(&id, None), Owner::Here);
        match b.owner(&id, None) {
            Owner::Peer(owner, _) => assert_eq!(Some(owner), addr(9091)),
            other => panic!("{other:?}"),
        }
        assert_ne!(a.mint("k"), id, "ids are unique");
    }

    #[test]
    fn a_restarted_replica_does_not_claim_old_ids() {
        let before = Ids::new(addr(9091), &[app("k", &["s1"])]);
        let mut after = Ids::new(addr(9091), &[app("k", &["s1"])]);
        after.epoch = [before.epoch[0] ^ 1, before.epoch[1]];
        assert_eq!(after.owner(&before.mint("k"), None), Owner::Stale);
    }

    #[test]
    fn forged_and_tampered_ids_are_invalid() {
        let a = Ids::new(addr(9091), &[app("k", &["s1"])]);
        let id = a.mint("k").to_string();
        for bad in [
            "",
            "nonexistent",
            "550e8400-e29b-41d4-a716-446655440000",
            &id[..id.len() - 1],
            &format!("{id}A"),
        ] {
            assert_eq!(a.owner(bad, None), Owner::Invalid, "{bad}");
        }
        // Every single-character change (the owner's address included) breaks the MAC.
        for i in 2..id.len() {
            let mut t = id.clone().into_bytes();
            t[i] = if t[i] == b'A' { b'B' } else { b'A' };
            let t = String::from_utf8(t).unwrap_or_default();
            assert_eq!(a.owner(&t, None), Owner::Invalid, "changed at {i}");
        }
        // Signed with a secret this replica does not know.
        let other = Ids::new(addr(9091), &[app("k", &["another"])]);
        assert_eq!(a.owner(&other.mint("k"), None), Owner::Invalid);
    }

    #[test]
    fn rotation_keeps_old_ids_valid_and_removal_ends_them() {
        let a = Ids::new(addr(9091), &[app("k", &["old"])]);
        let id = a.mint("k");
        a.set_apps(&[app("k", &["new", "old"])]);
        assert_eq!(a.owner(&id, None), Owner::Here);
        a.set_apps(&[app("k", &["new"])]);
        assert_eq!(a.owner(&id, None), Owner::Invalid);
        assert_eq!(a.owner(&a.mint("k"), None), Owner::Here);
    }

    #[test]
    fn peer_keys_never_print() {
        let a = Ids::new(None, &[app("k", &["s1"])]);
        assert_eq!(format!("{:?}", a.peer_keys(None)), "[PeerKey(***)]");
    }

    #[test]
    fn one_apps_secret_never_vouches_for_another_apps_id() {
        let a = Ids::new(addr(9091), &[app("k1", &["s1"]), app("k2", &["s2"])]);
        let id = a.mint("k1");
        assert_eq!(a.owner(&id, Some("k1")), Owner::Here);
        assert_eq!(a.owner(&id, Some("k2")), Owner::Invalid);
        assert_eq!(a.owner(&id, Some("unknown")), Owner::Invalid);
        assert_eq!(a.peer_keys(Some("k2")).len(), 1);
        assert_eq!(a.peer_keys(None).len(), 2);
    }
}
