package lifecycle

// State is what a stop depends on.
type State struct {
	Pinned   bool // --pin-path: the maps (and links, once attached) are pinned
	Detach   bool // --detach: remove the program and its pins for good
	Attached bool // this run attached the program to at least one interface
	Reused   bool // this run took over a pinned datapath an earlier probe left
}

// Plan is what a stop does. Whatever it says, the flows the probe holds and
// what the kernel table counted until then are exported first (the final
// tick), so a stop loses nothing it can reach.
type Plan struct {
	// DetachLinks takes the program off the interfaces before the final
	// tick, so nothing arrives after it. Otherwise the links are only
	// closed: pinned, the program stays attached and counting.
	DetachLinks bool
	// RestoreInterfaces puts promiscuous mode and offloads back as they
	// were; a program left counting keeps them as set.
	RestoreInterfaces bool
	// Unpin removes the pinned maps and links, and the flow state that
	// goes with them.
	Unpin bool
	// KeepCounting: the program stays attached after the stop, its counts
	// kept in the pinned tables for the next start.
	KeepCounting bool
}

// Decide is the one place that says how the probe stops, however it got
// there: a signal, a failed start, a datapath that cannot be read, or
// --detach.
func Decide(s State) Plan {
	switch {
	case !s.Pinned:
		// Nothing outlives the process: detach first, then the last drain
		// takes every packet counted.
		return Plan{DetachLinks: true, RestoreInterfaces: true}
	case s.Detach:
		return Plan{DetachLinks: true, RestoreInterfaces: true, Unpin: true}
	case s.Attached:
		return Plan{KeepCounting: true}
	case s.Reused:
		// Stopped before attaching, but an earlier probe's pinned program
		// may still be counting into these tables: leave it to the next start.
		return Plan{RestoreInterfaces: true, KeepCounting: true}
	default:
		// Pins this start made and never used: nothing would ever read them.
		return Plan{RestoreInterfaces: true, Unpin: true}
	}
}
