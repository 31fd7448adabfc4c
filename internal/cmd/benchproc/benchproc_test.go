package benchproc

import (
	"os"
	"testing"
	"time"
)

// TestTreeCPUTicks: a busy child's time counts in its parent's tree while
// it runs, not only once it has been waited for.
func TestTreeCPUTicks(t *testing.T) {
	p, err := Start("sh", nil, "sh", "-c", "sh -c 'while :; do :; done' & wait")
	if err != nil {
		t.Fatal(err)
	}
	defer p.Kill()
	var own, tree uint64
	for deadline := time.Now().Add(10 * time.Second); tree < 20 && time.Now().Before(deadline); time.Sleep(50 * time.Millisecond) {
		if own, err = CPUTicks(p.PID()); err != nil {
			t.Fatal(err)
		}
		if tree, err = TreeCPUTicks(p.PID()); err != nil {
			t.Fatal(err)
		}
	}
	if tree < 20 || own > 2 {
		t.Errorf("the waiting shell used %d ticks, its tree %d: want the busy child's 20 or more in the tree only", own, tree)
	}
	if _, err := TreeCPUTicks(os.Getpid()); err != nil {
		t.Errorf("TreeCPUTicks(self): %v", err)
	}
}
