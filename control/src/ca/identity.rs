//! Who is calling: a peer's node id, role and cluster read from its verified
//! certificate, the per-RPC authorization rule built on it, and when a node
//! renews its own certificate.

use crate::error_chain::ErrorChain;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use rustls::pki_types::CertificateDer;
use tonic::Status;

use super::{CaError, MANAGER_SERVER_NAME, WORKER_NAME};
use crate::objects::Role;

/// What a node certificate says about its holder.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct PeerIdentity {
    /// The certificate's CN.
    pub node_id: String,
    /// From the certificate's OU.
    pub role: Role,
    /// The certificate's O.
    pub cluster_id: String,
    pub not_before: SystemTime,
    pub not_after: SystemTime,
}

/// Which certificates an RPC accepts.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Required {
    /// Any node certificate of this cluster (workers and managers).
    Any,
    /// Manager certificates only.
    Manager,
}

/// Reads the identity in a node certificate (DER). It does not verify the
/// signature: the TLS layer has done that before any RPC sees the chain.
pub fn peer_identity(cert_der: &[u8]) -> Result<PeerIdentity, CaError> {
    let (_, cert) = x509_parser::parse_x509_certificate(cert_der).map_err(|e| {
        CaError::InvalidCertificate(format!("not an X.509 certificate: {}", e.chain()))
    })?;
    let subject = cert.subject();
    let single = |values: Vec<Result<&str, _>>, what: &str| -> Result<String, CaError> {
        match values.as_slice() {
            [Ok(value)] => Ok((*value).to_owned()),
            [Err(e)] => Err(CaError::InvalidCertificate(format!(
                "its {what} is not a string: {e}"
            ))),
            [] => Err(CaError::InvalidCertificate(format!("it has no {what}"))),
            _ => Err(CaError::InvalidCertificate(format!(
                "it has more than one {what}"
            ))),
        }
    };
    let node_id = single(
        subject.iter_common_name().map(|a| a.as_str()).collect(),
        "common name (node id)",
    )?;
    let ou = single(
        subject
            .iter_organizational_unit()
            .map(|a| a.as_str())
            .collect(),
        "organizational unit (role)",
    )?;
    let cluster_id = single(
        subject.iter_organization().map(|a| a.as_str()).collect(),
        "organization (cluster id)",
    )?;
    let role = match ou.as_str() {
        MANAGER_SERVER_NAME => Role::Manager,
        WORKER_NAME => Role::Worker,
        other => {
            return Err(CaError::InvalidCertificate(format!(
                "unknown role `{other}` in its OU: expected swarm-manager or swarm-worker"
            )))
        }
    };
    let time = |secs: i64| {
        u64::try_from(secs)
            .map(|s| UNIX_EPOCH + Duration::from_secs(s))
            .map_err(|_| {
                CaError::InvalidCertificate(format!("validity time {secs} is before 1970"))
            })
    };
    Ok(PeerIdentity {
        node_id,
        role,
        cluster_id,
        not_before: time(cert.validity().not_before.timestamp())?,
        not_after: time(cert.validity().not_after.timestamp())?,
    })
}

/// The check every gRPC method makes on its caller. `peer_certs` is the chain
/// the TLS layer verified against this cluster's root (leaf first), as
/// `tonic::Request::peer_certs()` gives it; `None` or empty means the client
/// sent no certificate (allowed at the TLS level only so that joining nodes
/// can reach the `Ca.Join` RPC).
pub fn authorize(
    peer_certs: Option<&[CertificateDer<'_>]>,
    required: Required,
) -> Result<PeerIdentity, Status> {
    let Some(leaf) = peer_certs.and_then(|chain| chain.first()) else {
        return Err(Status::unauthenticated(
            "a certificate from this cluster's CA is required",
        ));
    };
    let identity = peer_identity(leaf).map_err(|e| {
        Status::unauthenticated(format!(
            "a certificate from this cluster's CA is required: {}",
            e.chain()
        ))
    })?;
    if required == Required::Manager && identity.role != Role::Manager {
        return Err(Status::permission_denied(
            "worker certificates cannot call manager APIs",
        ));
    }
    Ok(identity)
}

/// [`authorize`] on a tonic request.
pub fn authorize_request<T>(
    request: &tonic::Request<T>,
    required: Required,
) -> Result<PeerIdentity, Status> {
    let certs = request.peer_certs();
    authorize(certs.as_deref().map(Vec::as_slice), required)
}

/// When to renew a certificate valid from `not_before` to `not_after`, as an
/// offset from `not_before`: Swarm's rule, a point uniformly between 50% and
/// 80% of its lifetime. `random_fraction` in `[0, 1]` picks the point (it is
/// clamped; NaN counts as 0).
pub fn renewal_delay(
    not_before: SystemTime,
    not_after: SystemTime,
    random_fraction: f64,
) -> Duration {
    let lifetime = not_after
        .duration_since(not_before)
        .unwrap_or(Duration::ZERO);
    let fraction = if random_fraction.is_nan() {
        0.0
    } else {
        random_fraction.clamp(0.0, 1.0)
    };
    lifetime.mul_f64(0.5 + 0.3 * fraction)
}

/// How long to wait from `now` until the renewal point of [`renewal_delay`];
/// zero when it is already past.
pub fn time_until_renewal(
    not_before: SystemTime,
    not_after: SystemTime,
    now: SystemTime,
    random_fraction: f64,
) -> Duration {
    let at = not_before + renewal_delay(not_before, not_after, random_fraction);
    at.duration_since(now).unwrap_or(Duration::ZERO)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::ca::encoding::cert_from_pem;
    use crate::ca::{NodeKey, RootCa};
    use proptest::prelude::*;
    use tonic::Code;

    fn node_cert(ca: &RootCa, id: &str, role: Role, validity: Duration) -> CertificateDer<'static> {
        let key = NodeKey::generate().unwrap();
        let pem = ca
            .sign(&key.csr_pem, id, role, "cluster7", validity)
            .unwrap();
        cert_from_pem(&pem, "test").unwrap()
    }

    #[test]
    fn sign_and_read_back_both_roles() {
        let ca = RootCa::generate("cluster7").unwrap();
        for role in [Role::Manager, Role::Worker] {
            let before = SystemTime::now() - Duration::from_secs(1);
            let der = node_cert(&ca, "n0de1d", role, Duration::from_secs(90 * 86400));
            let id = peer_identity(&der).unwrap();
            assert_eq!(id.node_id, "n0de1d");
            assert_eq!(id.role, role);
            assert_eq!(id.cluster_id, "cluster7");
            assert!(id.not_before >= before && id.not_before <= SystemTime::now());
            assert_eq!(
                id.not_after.duration_since(id.not_before).unwrap(),
                Duration::from_secs(90 * 86400)
            );
            // The DNS names clients check.
            let (_, cert) = x509_parser::parse_x509_certificate(&der).unwrap();
            let sans: Vec<String> = cert
                .subject_alternative_name()
                .unwrap()
                .unwrap()
                .value
                .general_names
                .iter()
                .map(|n| n.to_string())
                .collect();
            let ou = if role == Role::Manager {
                "swarm-manager"
            } else {
                "swarm-worker"
            };
            assert_eq!(
                sans,
                vec![format!("DNSName({ou})"), "DNSName(n0de1d)".to_owned()]
            );
        }
    }

    #[test]
    fn the_root_is_not_a_node() {
        let ca = RootCa::generate("c").unwrap();
        let der = cert_from_pem(ca.cert_pem(), "test").unwrap();
        let err = peer_identity(&der).unwrap_err();
        assert!(err.to_string().contains("organizational unit"), "{err}");
        assert!(peer_identity(b"junk").is_err());
    }

    #[test]
    fn authorize_enforces_presence_and_role() {
        let ca = RootCa::generate("cluster7").unwrap();
        let year = Duration::from_secs(365 * 86400);
        let worker = vec![node_cert(&ca, "w1", Role::Worker, year)];
        let manager = vec![node_cert(&ca, "m1", Role::Manager, year)];

        let err = authorize(None, Required::Any).unwrap_err();
        assert_eq!(err.code(), Code::Unauthenticated);
        assert_eq!(
            err.message(),
            "a certificate from this cluster's CA is required"
        );
        assert_eq!(
            authorize(Some(&[]), Required::Any).unwrap_err().code(),
            Code::Unauthenticated
        );

        assert_eq!(
            authorize(Some(&worker), Required::Any).unwrap().role,
            Role::Worker
        );
        let err = authorize(Some(&worker), Required::Manager).unwrap_err();
        assert_eq!(err.code(), Code::PermissionDenied);
        assert_eq!(
            err.message(),
            "worker certificates cannot call manager APIs"
        );
        assert_eq!(
            authorize(Some(&manager), Required::Manager)
                .unwrap()
                .node_id,
            "m1"
        );
    }

    #[test]
    fn a_two_second_certificate_renews_between_1_and_1_6_s() {
        let ca = RootCa::generate("c").unwrap();
        let id =
            peer_identity(&node_cert(&ca, "n1", Role::Worker, Duration::from_secs(2))).unwrap();
        for fraction in [0.0, 0.25, 0.5, 0.999, 1.0] {
            let delay = renewal_delay(id.not_before, id.not_after, fraction);
            assert!(
                delay >= Duration::from_millis(1000) && delay <= Duration::from_millis(1600),
                "{delay:?}"
            );
        }
        let wait = time_until_renewal(id.not_before, id.not_after, SystemTime::now(), 1.0);
        assert!(wait <= Duration::from_millis(1600));
        let past = id.not_after + Duration::from_secs(5);
        assert_eq!(
            time_until_renewal(id.not_before, id.not_after, past, 0.3),
            Duration::ZERO
        );
    }

    proptest! {
        #[test]
        fn renewal_falls_in_50_to_80_percent(
            start in 0u64..4_000_000_000,
            life_ms in 0u64..(100 * 365 * 86_400_000),
            fraction in -1.0f64..2.0,
        ) {
            let not_before = UNIX_EPOCH + Duration::from_secs(start);
            let life = Duration::from_millis(life_ms);
            let delay = renewal_delay(not_before, not_before + life, fraction);
            let slack = Duration::from_micros(1);
            prop_assert!(delay + slack >= life.mul_f64(0.5), "{:?} < 50% of {:?}", delay, life);
            prop_assert!(delay <= life.mul_f64(0.8) + slack, "{:?} > 80% of {:?}", delay, life);
        }

        #[test]
        fn renewal_grows_linearly_with_the_fraction(f in 0.0f64..1.0) {
            let t0 = UNIX_EPOCH;
            let delay = renewal_delay(t0, t0 + Duration::from_secs(1000), f);
            let expected = 500.0 + 300.0 * f;
            prop_assert!((delay.as_secs_f64() - expected).abs() < 1e-6, "{:?} vs {}", delay, expected);
        }
    }
}
