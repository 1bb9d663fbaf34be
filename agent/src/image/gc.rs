//! The image garbage collection policy (the kubelet's shape): when the
//! store's filesystem is fuller than a high mark, remove images no task
//! uses, least recently used first, until the estimate reaches a low mark.
//! A pure decision, tested without a disk.

use std::collections::{BTreeMap, BTreeSet};

use super::digest::Digest;
use super::store::ImageRecord;

/// Disk marks in percent of the store's filesystem.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct GcPolicy {
    /// Collect once usage is above this.
    pub high_percent: u8,
    /// Stop collecting once the estimate is at or below this.
    pub low_percent: u8,
}

impl Default for GcPolicy {
    fn default() -> Self {
        GcPolicy {
            high_percent: 85,
            low_percent: 80,
        }
    }
}

/// The images to remove, in order. A removed image frees the layers no
/// remaining image shares.
pub fn plan(
    images: &[ImageRecord],
    in_use: &BTreeSet<Digest>,
    used: u64,
    total: u64,
    policy: &GcPolicy,
) -> Vec<Digest> {
    if total == 0 || used * 100 <= total * u64::from(policy.high_percent) {
        return Vec::new();
    }
    let target = total * u64::from(policy.low_percent) / 100;
    let mut users: BTreeMap<&Digest, usize> = BTreeMap::new();
    for image in images {
        for layer in &image.layers {
            *users.entry(&layer.diff_id).or_default() += 1;
        }
    }
    let mut candidates: Vec<&ImageRecord> =
        images.iter().filter(|i| !in_use.contains(&i.id)).collect();
    candidates.sort_by(|a, b| a.last_used.cmp(&b.last_used).then(a.id.cmp(&b.id)));
    let mut estimate = used;
    let mut victims = Vec::new();
    for image in candidates {
        if estimate <= target {
            break;
        }
        for layer in &image.layers {
            let count = users.entry(&layer.diff_id).or_default();
            *count = count.saturating_sub(1);
            if *count == 0 {
                estimate = estimate.saturating_sub(layer.size);
            }
        }
        victims.push(image.id.clone());
    }
    victims
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::image::store::LayerRecord;

    fn image(n: u8, last_used: u64, layers: &[(u8, u64)]) -> ImageRecord {
        ImageRecord {
            id: Digest::of(&[n]),
            repo_tags: vec![],
            repo_digests: vec![],
            layers: layers
                .iter()
                .map(|(l, size)| LayerRecord {
                    diff_id: Digest::of(&[100, *l]),
                    blob: None,
                    size: *size,
                })
                .collect(),
            os: "linux".into(),
            architecture: "amd64".into(),
            created: None,
            added: 0,
            last_used,
        }
    }

    #[test]
    fn nothing_is_collected_below_the_high_mark() {
        let images = vec![image(1, 1, &[(1, 10)])];
        assert!(plan(&images, &BTreeSet::new(), 85, 100, &GcPolicy::default()).is_empty());
    }

    #[test]
    fn least_recently_used_go_first_until_the_low_mark() {
        let images = vec![
            image(1, 30, &[(1, 5)]),
            image(2, 10, &[(2, 5)]),
            image(3, 20, &[(3, 5)]),
        ];
        // 90 of 100 used: must free 10 to reach 80.
        let victims = plan(&images, &BTreeSet::new(), 90, 100, &GcPolicy::default());
        assert_eq!(victims, vec![images[1].id.clone(), images[2].id.clone()]);
    }

    #[test]
    fn images_in_use_are_never_collected() {
        let images = vec![image(1, 1, &[(1, 50)]), image(2, 2, &[(2, 50)])];
        let in_use: BTreeSet<Digest> = [images[0].id.clone()].into();
        let victims = plan(&images, &in_use, 99, 100, &GcPolicy::default());
        assert_eq!(victims, vec![images[1].id.clone()]);
    }

    #[test]
    fn shared_layers_free_nothing_until_their_last_image_goes() {
        // Both share a 40-byte layer; the first alone frees only 1.
        let images = vec![
            image(1, 1, &[(9, 40), (1, 1)]),
            image(2, 2, &[(9, 40), (2, 1)]),
        ];
        let victims = plan(&images, &BTreeSet::new(), 90, 100, &GcPolicy::default());
        assert_eq!(victims.len(), 2);
    }
}
