package lifecycle

import "testing"

// Every combination of the stop's inputs, and what the stop does.
func TestDecide(t *testing.T) {
	cases := []struct {
		name string
		s    State
		want Plan
	}{
		{"not pinned, stopped", State{Attached: true}, Plan{DetachLinks: true, RestoreInterfaces: true}},
		{"not pinned, failed before attaching", State{}, Plan{DetachLinks: true, RestoreInterfaces: true}},
		{"not pinned, --detach", State{Detach: true, Attached: true}, Plan{DetachLinks: true, RestoreInterfaces: true}},
		{"pinned, stopped", State{Pinned: true, Attached: true}, Plan{KeepCounting: true}},
		{"pinned and reused, stopped", State{Pinned: true, Attached: true, Reused: true}, Plan{KeepCounting: true}},
		{"pinned, failed before attaching", State{Pinned: true}, Plan{RestoreInterfaces: true, Unpin: true}},
		{"pinned and reused, failed before attaching", State{Pinned: true, Reused: true}, Plan{RestoreInterfaces: true, KeepCounting: true}},
		{"pinned, --detach", State{Pinned: true, Detach: true, Attached: true, Reused: true}, Plan{DetachLinks: true, RestoreInterfaces: true, Unpin: true}},
		{"pinned, --detach failed before attaching", State{Pinned: true, Detach: true, Reused: true}, Plan{DetachLinks: true, RestoreInterfaces: true, Unpin: true}},
	}
	for _, c := range cases {
		if got := Decide(c.s); got != c.want {
			t.Errorf("%s: %+v, want %+v", c.name, got, c.want)
		}
	}
	// Whatever the inputs: a program left counting is never unpinned nor
	// has its interfaces restored under it, and detached links are never
	// said to keep counting.
	for _, pinned := range []bool{false, true} {
		for _, detach := range []bool{false, true} {
			for _, attached := range []bool{false, true} {
				for _, reused := range []bool{false, true} {
					s := State{Pinned: pinned, Detach: detach, Attached: attached, Reused: reused}
					p := Decide(s)
					if p.KeepCounting && (p.Unpin || p.DetachLinks || !pinned) {
						t.Errorf("%+v: %+v keeps counting but loses its pins or links", s, p)
					}
					if p.KeepCounting == p.DetachLinks && attached {
						t.Errorf("%+v: %+v: an attached program must either be detached or keep counting", s, p)
					}
					if p.Unpin && attached && !detach {
						t.Errorf("%+v: %+v unpins tables a pinned program counts into", s, p)
					}
				}
			}
		}
	}
}
