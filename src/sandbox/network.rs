//! The sandbox's private Docker network: a /24 out of 10.231.0.0/16 that no other Docker network
//! uses, with fixed addresses inside it (gateway .1, registry .2, servers from .11), so the
//! registry's certificate and the known_hosts lines can be made before anything starts.

use std::collections::HashMap;
use std::net::Ipv4Addr;

use anyhow::{Context, Result};
use bollard::Docker;
use bollard::models::{Ipam, IpamConfig, NetworkCreateRequest};
use bollard::query_parameters::ListNetworksOptions;
use ipnet::{IpNet, Ipv4Net};

use super::state::SANDBOX_LABEL;

/// Addresses inside a sandbox subnet.
#[derive(Debug, Clone, Copy)]
pub struct Layout {
    pub subnet: Ipv4Net,
}

impl Layout {
    fn host(&self, index: u8) -> Ipv4Addr {
        let base = u32::from(self.subnet.network());
        Ipv4Addr::from(base + u32::from(index))
    }

    pub fn gateway(&self) -> Ipv4Addr {
        self.host(1)
    }

    pub fn registry(&self) -> Ipv4Addr {
        self.host(2)
    }

    /// `number` counts from 1.
    pub fn server(&self, number: u8) -> Ipv4Addr {
        self.host(10 + number)
    }
}

/// Create the network, picking a free subnet; retried if another network took it meanwhile.
pub async fn create(docker: &Docker, network: &str, sandbox: &str) -> Result<Layout> {
    let mut tried = Vec::new();
    for _ in 0..5 {
        let mut taken = taken_subnets(docker).await?;
        taken.extend(tried.iter().copied().map(IpNet::V4));
        let subnet = choose_subnet(sandbox, &taken).context(
            "No free /24 left in 10.231.0.0/16 for a sandbox network; remove unused Docker networks",
        )?;
        let layout = Layout { subnet };
        let request = NetworkCreateRequest {
            name: network.to_string(),
            driver: Some("bridge".to_string()),
            labels: Some(HashMap::from([(
                SANDBOX_LABEL.to_string(),
                sandbox.to_string(),
            )])),
            ipam: Some(Ipam {
                config: Some(vec![IpamConfig {
                    subnet: Some(subnet.to_string()),
                    gateway: Some(layout.gateway().to_string()),
                    ..Default::default()
                }]),
                ..Default::default()
            }),
            ..Default::default()
        };
        match docker.create_network(request).await {
            Ok(_) => return Ok(layout),
            Err(err) if err.to_string().contains("overlap") => tried.push(subnet),
            Err(err) => {
                return Err(err).with_context(|| format!("Failed to create network `{network}`"));
            }
        }
    }
    anyhow::bail!("Failed to find a free subnet for network `{network}` after 5 tries")
}

async fn taken_subnets(docker: &Docker) -> Result<Vec<IpNet>> {
    let networks = docker
        .list_networks(None::<ListNetworksOptions>)
        .await
        .context("Failed to list Docker networks")?;
    Ok(networks
        .iter()
        .filter_map(|network| network.ipam.as_ref()?.config.as_ref())
        .flatten()
        .filter_map(|config| config.subnet.as_deref()?.parse().ok())
        .collect())
}

/// A /24 in 10.231.0.0/16 overlapping none of `taken`, starting from one derived from the name so
/// that a sandbox tends to get the same addresses every time.
pub fn choose_subnet(name: &str, taken: &[IpNet]) -> Option<Ipv4Net> {
    let start = name.bytes().fold(2166136261u32, |hash, byte| {
        (hash ^ u32::from(byte)).wrapping_mul(16777619)
    });
    (0..256u32)
        .map(|offset| ((start.wrapping_add(offset)) % 256) as u8)
        .filter_map(|third| Ipv4Net::new(Ipv4Addr::new(10, 231, third, 0), 24).ok())
        .find(|candidate| {
            let candidate = IpNet::V4(*candidate);
            !taken
                .iter()
                .any(|net| net.contains(&candidate.network()) || candidate.contains(&net.network()))
        })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn subnet_is_stable_and_avoids_taken_ones() {
        let first = choose_subnet("hoist", &[]).expect("free");
        assert_eq!(choose_subnet("hoist", &[]), Some(first));
        let second = choose_subnet("hoist", &[IpNet::V4(first)]).expect("free");
        assert_ne!(first, second);
        let wide: IpNet = "10.0.0.0/8".parse().expect("net");
        assert_eq!(choose_subnet("hoist", &[wide]), None);
        let inner: IpNet = format!("{}/28", first.network()).parse().expect("net");
        assert_ne!(choose_subnet("hoist", &[inner]), Some(first));
    }

    #[test]
    fn layout_addresses() {
        let layout = Layout {
            subnet: "10.231.7.0/24".parse().expect("net"),
        };
        assert_eq!(layout.gateway(), Ipv4Addr::new(10, 231, 7, 1));
        assert_eq!(layout.registry(), Ipv4Addr::new(10, 231, 7, 2));
        assert_eq!(layout.server(1), Ipv4Addr::new(10, 231, 7, 11));
    }
}
