//! What a bundle holds, once understood: the one value each format's reader (`oci.rs`,
//! `docker.rs`) produces and the import (`import.rs`) consumes.

use std::collections::HashMap;

use super::graph::Graph;
use super::naming::Found;
use crate::digest::Digest;

/// What a bundle holds, understood: each image's root manifest with the names the bundle gives
/// it, and everything the root needs.
pub struct Plan {
    pub format: &'static str,
    pub images: Vec<(Digest, Vec<Found>)>,
    pub graphs: HashMap<Digest, Graph>,
    /// What the bundle says that atoll did not follow, and why (printed with the report).
    pub warnings: Vec<String>,
}

impl Plan {
    pub fn new(format: &'static str) -> Plan {
        Plan {
            format,
            images: Vec::new(),
            graphs: HashMap::new(),
            warnings: Vec::new(),
        }
    }

    pub fn add(&mut self, root: Digest, names: Vec<Found>, graph: Graph) {
        self.graphs.insert(root.clone(), graph);
        self.images.push((root, names));
    }
}
