//! Integration tests: the real `atoll` binary, started on 127.0.0.1:0 against a temporary data
//! directory, driven over HTTP (and, in `e2e_*`, by skopeo and docker).

mod support;

mod access;
mod appliance;
mod blobs;
mod bundle_limits;
mod bundles;
mod cluster;
mod conformance;
mod crash;
mod discovery;
mod e2e_bundles;
mod e2e_docker;
mod e2e_mirror;
mod e2e_skopeo;
mod e2e_tls;
mod e2e_ui;
mod full_disk;
mod fuzz_regressions;
mod gc;
mod hostile;
mod load;
mod logins;
mod manifests;
mod object_store;
mod proxy;
mod serving;
mod tls;
mod ui;
mod uploads;
