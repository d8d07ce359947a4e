//! The canary scenario's world: the echo targets of every cell's two arms, the tenants and
//! their cells, the file registry for a canary weight, and each tenant's arm by the documented
//! hash (`routing::canary::arm`), computed here without the proxy.

use std::collections::HashMap;
use std::net::SocketAddr;

use cellgate::config::file::{FileCell, FileGroup};
use cellgate::placement::Cell;
use cellgate::routing::canary;
use http::{HeaderValue, Uri};

use super::{ARMS, CANARY, CANARY_TARGETS, CELLS, PER_CELL, STABLE, STABLE_TARGETS};
use crate::common::host;

/// What the driver knows about the setup: tenants, their cells, the echo targets.
pub struct World {
    pub tenants: Vec<String>,
    /// `Host` of each tenant's requests.
    pub hosts: Vec<HeaderValue>,
    /// Echo target name -> global target index (`cell * PER_CELL + position in the cell`).
    pub target_index: HashMap<String, usize>,
    /// `http://ADDR` of each target, by global index.
    pub target_urls: Vec<String>,
    /// `cell-1`.. by cell index.
    pub cell_names: Vec<String>,
    pub uri: Uri,
}

impl World {
    /// Starts every cell's echo targets (in group order: the stable ones, then the canary's) and
    /// names `tenants` tenants (`tenant-00001`..), requested through the proxy on `listen`.
    pub async fn start(tenants: usize, listen: SocketAddr) -> Self {
        let mut targets = Vec::with_capacity(CELLS * PER_CELL);
        for c in 0..CELLS {
            let cell = World::cell_name(c);
            for (arm, n) in [(STABLE, STABLE_TARGETS), (CANARY, CANARY_TARGETS)] {
                for k in 1..=n {
                    let name = format!("{cell}-{}-{k}", ARMS[arm].0);
                    targets.push(
                        cellgate::demo::spawn_echo_target(&cell, &name)
                            .await
                            .unwrap(),
                    );
                }
            }
        }
        let tenants: Vec<String> = (1..=tenants).map(|i| format!("tenant-{i:05}")).collect();
        Self {
            hosts: tenants.iter().map(|t| host(t)).collect(),
            tenants,
            target_index: targets
                .iter()
                .enumerate()
                .map(|(i, t)| (t.name.clone(), i))
                .collect(),
            target_urls: targets
                .iter()
                .map(|t| format!("http://{}", t.addr))
                .collect(),
            cell_names: (0..CELLS).map(World::cell_name).collect(),
            uri: format!("http://{listen}/").parse().unwrap(),
        }
    }

    /// Tenants are spread over the cells in turn: tenant `i` lives in cell `i % CELLS`.
    pub fn cell_of_tenant(i: usize) -> usize {
        i % CELLS
    }

    pub fn cell_of_target(t: usize) -> usize {
        t / PER_CELL
    }

    pub fn arm_of_target(t: usize) -> usize {
        if t % PER_CELL < STABLE_TARGETS {
            STABLE
        } else {
            CANARY
        }
    }

    pub fn cell_name(c: usize) -> String {
        format!("cell-{}", c + 1)
    }

    pub fn tenants_of_cell(&self, c: usize) -> impl Iterator<Item = usize> + '_ {
        (0..self.tenants.len()).filter(move |&i| Self::cell_of_tenant(i) == c)
    }

    /// The registry's cells with canary weight `w`, as the file's `[[cells]]` records.
    fn file_cells(&self, w: u32) -> Vec<FileCell> {
        (0..CELLS)
            .map(|c| {
                let urls = &self.target_urls[c * PER_CELL..(c + 1) * PER_CELL];
                let group = |arm: usize, weight: u32, targets: &[String]| FileGroup {
                    name: ARMS[arm].0.to_owned(),
                    version: Some(ARMS[arm].1.to_owned()),
                    weight,
                    targets: targets.to_vec(),
                };
                FileCell {
                    id: Self::cell_name(c),
                    state: None,
                    targets: Vec::new(),
                    groups: vec![
                        group(STABLE, 100 - w, &urls[..STABLE_TARGETS]),
                        group(CANARY, w, &urls[STABLE_TARGETS..]),
                    ],
                    preserve_host: None,
                    max_in_flight: None,
                    wave: None,
                    protocol: None,
                }
            })
            .collect()
    }

    pub fn registry(&self, w: u32) -> String {
        let mut s = format!("# canary loadtest: canary weight {w}, stable {}\n", 100 - w);
        for fc in self.file_cells(w) {
            s.push_str(&format!("\n[[cells]]\nid = \"{}\"\n", fc.id));
            for g in &fc.groups {
                let targets: Vec<String> = g.targets.iter().map(|t| format!("\"{t}\"")).collect();
                s.push_str(&format!(
                    "\n[[cells.groups]]\nname = \"{}\"\nversion = \"{}\"\nweight = {}\ntargets = [{}]\n",
                    g.name,
                    g.version.as_deref().unwrap_or(&g.name),
                    g.weight,
                    targets.join(", ")
                ));
            }
        }
        for (i, t) in self.tenants.iter().enumerate() {
            s.push_str(&format!(
                "\n[[tenants]]\nid = \"{t}\"\ncell = \"{}\"\nversion = {}\n",
                Self::cell_name(Self::cell_of_tenant(i)),
                i + 1
            ));
        }
        s
    }

    /// Each tenant's arm under canary weight `w` by the documented hash
    /// (`routing::canary::arm`), computed here without the proxy.
    pub fn predicted_arms(&self, w: u32) -> Vec<usize> {
        let cells: Vec<Cell> = self
            .file_cells(w)
            .iter()
            .enumerate()
            .map(|(c, fc)| Cell::from_file(fc, &format!("cells[{c}]")).unwrap())
            .collect();
        self.tenants
            .iter()
            .enumerate()
            .map(|(i, t)| {
                let cell = &cells[Self::cell_of_tenant(i)];
                let g = canary::arm(&cell.groups, t).unwrap();
                ARMS.iter()
                    .position(|(name, _)| *name == &*cell.groups[g].name)
                    .unwrap()
            })
            .collect()
    }
}
