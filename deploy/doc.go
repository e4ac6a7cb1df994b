// Package deploy holds what runs beside a blobgc cluster: a Grafana
// dashboard (grafana/blobgc-dashboard.json) and Prometheus alerting rules
// (prometheus/blobgc-alerts.yml). It is a module of its own so that the
// Prometheus packages its test uses to check them stay out of blobgc's
// dependencies.
package deploy
