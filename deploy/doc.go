// Package deploy holds no code: it is the home of the deployment files
// (systemd units, container image, Kubernetes manifests, compose pipeline,
// ClickHouse DDL, Grafana dashboard) and of the tests that check them
// against the programs and schemas/ in `make test`. See README.md.
package deploy
