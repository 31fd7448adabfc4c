// Package kafkacheck runs a real Kafka-protocol broker in a test
// (franz-go's kfake) and reads back what was written to it with an
// independent client (franz-go's kgo), for exact comparisons.
package kafkacheck

import (
	"context"
	"fmt"
	"net"
	"testing"
	"time"

	"github.com/twmb/franz-go/pkg/kfake"
	"github.com/twmb/franz-go/pkg/kgo"

	"github.com/xdpflow/xdpflow/internal/testkit/freeport"
)

// Broker is a one-node Kafka cluster on 127.0.0.1 that keeps its data on
// disk, so it can be stopped and started again with everything it held.
type Broker struct {
	t    testing.TB
	Port int
	Addr string
	dir  string
	opts []kfake.Opt
	in   InNamespace
	ns   bool // in a namespace other than the test's
	c    *kfake.Cluster
}

// InNamespace runs fn in a network namespace (testnet.Pair.In).
type InNamespace func(fn func() error) error

// Start starts a broker with topics of the given partitions, plus opts
// (TLS, SASL). in, when not nil, puts the broker's listener and the
// reader's connections into a network namespace.
func Start(t testing.TB, partitions int32, topics []string, in InNamespace, opts ...kfake.Opt) *Broker {
	t.Helper()
	b := &Broker{t: t, dir: t.TempDir(), in: in, ns: in != nil}
	if in == nil {
		b.in = func(fn func() error) error { return fn() }
	}
	port, err := freeport.FindIn(b.in, "tcp")
	if err != nil {
		t.Fatal(err)
	}
	b.Port = port
	b.Addr = fmt.Sprintf("127.0.0.1:%d", b.Port)
	if len(topics) > 0 {
		opts = append(opts, kfake.SeedTopics(partitions, topics...))
	}
	b.opts = opts
	b.Restart()
	t.Cleanup(b.Stop)
	return b
}

// listen opens a listener in the broker's namespace.
func (b *Broker) listen(network, addr string) (ln net.Listener, err error) {
	b.in(func() error { ln, err = net.Listen(network, addr); return nil })
	return ln, err
}

// dial connects from inside the broker's namespace.
func (b *Broker) dial(ctx context.Context, network, addr string) (c net.Conn, err error) {
	b.in(func() error { c, err = (&net.Dialer{}).DialContext(ctx, network, addr); return nil })
	return c, err
}

// Stop shuts the broker down; its data stays on disk.
func (b *Broker) Stop() {
	if b.c != nil {
		b.c.Close()
		b.c = nil
	}
}

// Restart starts the broker again on the same port with the same data.
func (b *Broker) Restart() {
	b.t.Helper()
	b.Stop()
	opts := append([]kfake.Opt{kfake.Ports(b.Port), kfake.DataDir(b.dir), kfake.ListenFn(b.listen)}, b.opts...)
	var err error
	// The port may linger a moment after Stop.
	for try := 0; try < 50; try++ {
		if b.c, err = kfake.NewCluster(opts...); err == nil {
			return
		}
		time.Sleep(100 * time.Millisecond)
	}
	b.t.Fatalf("kfake: %v", err)
}

// Cluster is the running cluster (nil while stopped).
func (b *Broker) Cluster() *kfake.Cluster { return b.c }

// Read consumes topic from the start until want records arrived and then
// quiet passed with no more (duplicates show up), or timeout. It fails the
// test on timeout.
func (b *Broker) Read(topic string, want int, quiet, timeout time.Duration, opts ...kgo.Opt) []*kgo.Record {
	b.t.Helper()
	opts = append([]kgo.Opt{kgo.SeedBrokers(b.Addr), kgo.ConsumeTopics(topic), kgo.ConsumeResetOffset(kgo.NewOffset().AtStart())}, opts...)
	if b.ns {
		opts = append(opts, kgo.Dialer(b.dial)) // kgo's TLS option does not combine with a dialer
	}
	cl, err := kgo.NewClient(opts...)
	if err != nil {
		b.t.Fatal(err)
	}
	defer cl.Close()
	var recs []*kgo.Record
	deadline := time.Now().Add(timeout)
	for {
		wait := time.Until(deadline)
		if len(recs) >= want {
			wait = quiet
		}
		if wait <= 0 {
			b.t.Fatalf("kafka topic %s: %d records after %v, want %d", topic, len(recs), timeout, want)
		}
		ctx, cancel := context.WithTimeout(context.Background(), wait)
		fs := cl.PollFetches(ctx)
		cancel()
		n := len(recs)
		fs.EachRecord(func(r *kgo.Record) { recs = append(recs, r) })
		if len(recs) == n && len(recs) >= want && ctx.Err() != nil {
			return recs
		}
	}
}
