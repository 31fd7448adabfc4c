package lifecycle

import (
	"context"
	"errors"
	"strings"
	"testing"
)

// Parts start in order and are undone in reverse, all with the plan of the
// state at stop time; a part that fails stops the start, and what it and
// the parts before it set up is undone; run only runs when every part
// started; errors of the run and of the undos all come back.
func TestSequence(t *testing.T) {
	type step struct {
		name    string
		failing bool // start fails
		partial bool // ...having set up something to undo
		undoErr bool
	}
	cases := []struct {
		name     string
		steps    []step
		runErr   error
		attached bool
		wantLog  string
		wantErrs []string
	}{
		{"clean stop", []step{{name: "a"}, {name: "b"}, {name: "c"}}, nil, true,
			"start a, start b, start c, run, undo c keep, undo b keep, undo a keep", nil},
		{"run fails", []step{{name: "a"}, {name: "b"}}, errors.New("map gone"), true,
			"start a, start b, run, undo b keep, undo a keep", []string{"map gone"}},
		{"second part fails", []step{{name: "a"}, {name: "b", failing: true}, {name: "c"}}, nil, false,
			"start a, start b, undo a unpin", []string{"b failed"}},
		{"fails half-way", []step{{name: "a"}, {name: "b", failing: true, partial: true}, {name: "c"}}, nil, false,
			"start a, start b, undo b unpin, undo a unpin", []string{"b failed"}},
		{"an undo fails, the others still run", []step{{name: "a"}, {name: "b", undoErr: true}, {name: "c"}}, nil, true,
			"start a, start b, start c, run, undo c keep, undo b keep, undo a keep", []string{"stop b: b stuck"}},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			var log []string
			attached := false
			var parts []part
			for _, s := range c.steps {
				s := s
				stop := func(pl Plan) error {
					word := "keep"
					if pl.Unpin {
						word = "unpin"
					}
					log = append(log, "undo "+s.name+" "+word)
					if s.undoErr {
						return errors.New(s.name + " stuck")
					}
					return nil
				}
				parts = append(parts, part{s.name, func(context.Context) (undo, error) {
					log = append(log, "start "+s.name)
					switch {
					case s.failing && s.partial:
						return stop, errors.New(s.name + " failed")
					case s.failing:
						return nil, errors.New(s.name + " failed")
					}
					attached = c.attached // the last part to start decides it
					return stop, nil
				}})
			}
			run := func(context.Context) error { log = append(log, "run"); return c.runErr }
			_, err := sequence(context.Background(), parts, run, func() State { return State{Pinned: true, Attached: attached} })
			if got := strings.Join(log, ", "); got != c.wantLog {
				t.Errorf("steps:\n %s\nwant\n %s", got, c.wantLog)
			}
			for _, w := range c.wantErrs {
				if err == nil || !strings.Contains(err.Error(), w) {
					t.Errorf("error %v, want one with %q", err, w)
				}
			}
			if len(c.wantErrs) == 0 && err != nil {
				t.Errorf("error %v", err)
			}
		})
	}
}
