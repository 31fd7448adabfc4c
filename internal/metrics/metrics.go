// Package metrics serves a program's Prometheus metrics and its health:
// /metrics, /healthz (the process answers) and /readyz (it does its job:
// the probe is attached and its exporters up; the collector listens). Both
// programs use it with their own collectors, which read the counters the
// program keeps anyway at scrape time, so nothing is counted twice.
package metrics

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/http"
	"sync"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/collectors"
	"github.com/prometheus/client_golang/prometheus/promhttp"
)

// Server is the metrics and health endpoint.
type Server struct {
	srv  *http.Server
	addr net.Addr

	mu    sync.Mutex
	ready func() error // nil error: ready
}

// Serve listens on addr ("" disables: nil, nil) and serves reg's metrics,
// plus the Go runtime's and the process's. ready tells /readyz what is
// wrong, or nil.
func Serve(addr string, reg *prometheus.Registry, ready func() error, log *slog.Logger) (*Server, error) {
	if addr == "" {
		return nil, nil
	}
	reg.MustRegister(collectors.NewGoCollector(), collectors.NewProcessCollector(collectors.ProcessCollectorOpts{}))
	ln, err := net.Listen("tcp", addr)
	if err != nil {
		return nil, fmt.Errorf("--metrics %s: %w (another program on the port? give another with --metrics, or --metrics '' to disable)", addr, err)
	}
	s := &Server{addr: ln.Addr(), ready: ready}
	mux := http.NewServeMux()
	mux.Handle("/metrics", promhttp.HandlerFor(reg, promhttp.HandlerOpts{ErrorLog: slog.NewLogLogger(log.Handler(), slog.LevelWarn)}))
	mux.HandleFunc("/healthz", func(w http.ResponseWriter, _ *http.Request) { fmt.Fprintln(w, "ok") })
	mux.HandleFunc("/readyz", func(w http.ResponseWriter, _ *http.Request) {
		if err := s.check(); err != nil {
			http.Error(w, "not ready: "+err.Error(), http.StatusServiceUnavailable)
			return
		}
		fmt.Fprintln(w, "ready")
	})
	s.srv = &http.Server{Handler: mux, ReadHeaderTimeout: 5 * time.Second}
	go func() {
		if err := s.srv.Serve(ln); err != nil && !errors.Is(err, http.ErrServerClosed) {
			log.Error("metrics server", "err", err)
		}
	}()
	log.Info("metrics", "addr", s.addr, "paths", "/metrics /healthz /readyz")
	return s, nil
}

func (s *Server) check() error {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.ready == nil {
		return nil
	}
	return s.ready()
}

// Addr is the address served.
func (s *Server) Addr() net.Addr { return s.addr }

// Close stops serving.
func (s *Server) Close() error {
	if s == nil {
		return nil
	}
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Second)
	defer cancel()
	return s.srv.Shutdown(ctx)
}

// Func is a prometheus.Collector made of a function that sends the
// current values: the programs read their own counters at scrape time.
type Func struct {
	Descs []*prometheus.Desc
	Fn    func(ch chan<- prometheus.Metric)
}

func (f *Func) Describe(ch chan<- *prometheus.Desc) {
	for _, d := range f.Descs {
		ch <- d
	}
}

func (f *Func) Collect(ch chan<- prometheus.Metric) { f.Fn(ch) }

// Desc describes a metric of f.
func (f *Func) Desc(name, help string, labels ...string) *prometheus.Desc {
	d := prometheus.NewDesc(name, help, labels, nil)
	f.Descs = append(f.Descs, d)
	return d
}

// Counter and Gauge send one value.
func Counter(ch chan<- prometheus.Metric, d *prometheus.Desc, v uint64, labels ...string) {
	ch <- prometheus.MustNewConstMetric(d, prometheus.CounterValue, float64(v), labels...)
}

func Gauge(ch chan<- prometheus.Metric, d *prometheus.Desc, v float64, labels ...string) {
	ch <- prometheus.MustNewConstMetric(d, prometheus.GaugeValue, v, labels...)
}
