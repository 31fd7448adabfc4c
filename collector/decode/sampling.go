package decode

import (
	"encoding/binary"
	"math"
)

// Sampling and selector IEs (RFC 7270 for NetFlow v9's, RFC 5477 for
// PSAMP's; IANA "IPFIX Information Elements" and "psamp-parameters").
const (
	ieSamplingInterval     = 34  // samplingInterval: 1 in N (v9 SAMPLING_INTERVAL)
	ieSamplingAlgorithm    = 35  // samplingAlgorithm: 1 deterministic, 2 random; the rate is still 34's
	ieSamplerID            = 48  // samplerId (v9 FLOW_SAMPLER_ID)
	ieSamplerMode          = 49  // samplerMode (v9 FLOW_SAMPLER_MODE): as 35
	ieSamplerRandomIntvl   = 50  // samplerRandomInterval (v9 FLOW_SAMPLER_RANDOM_INTERVAL): 1 in N
	ieSelectorID           = 302 // selectorId
	ieSelectorAlgorithm    = 304 // selectorAlgorithm: which of the IEs below gives the rate
	ieSamplingPktInterval  = 305 // samplingPacketInterval: packets selected in a row
	ieSamplingPktSpace     = 306 // samplingPacketSpace: packets then skipped
	ieSamplingTimeInterval = 307 // samplingTimeInterval (µs selected): no packet ratio
	ieSamplingTimeSpace    = 308
	ieSamplingSize         = 309 // samplingSize: n packets selected...
	ieSamplingPopulation   = 310 // samplingPopulation: ...out of N
	ieSamplingProbability  = 311 // samplingProbability: float64 (float32 reduced size)
)

// selectorAlgorithm values (IANA psamp-parameters).
const (
	selSystematicCount = 1 // 305/306
	selSystematicTime  = 2 // 307/308: a ratio of time, not of packets
	selRandomNofN      = 3 // 309/310
	selUniformProb     = 4 // 311
	selPropertyMatch   = 5 // filtering: every matching packet is selected
	// 6, 7 hash-based filtering, 8 flow-state dependent n-out-of-N: the
	// share of packets selected cannot be known from the IEs.
)

// Bits of sampling.have.
const (
	sInterval = 1 << iota // 34, 50
	sMode                 // 35, 49: read, but they do not change the rate
	sID                   // 48, 302
	sAlgo
	sPktInterval
	sPktSpace
	sTime
	sSize
	sPopulation
	sProbability
)

// sampling is what one record says about how its packets were sampled.
type sampling struct {
	have                  uint16
	algo                  uint16
	interval              uint64
	pktInterval, pktSpace uint64
	size, population      uint64
	probability           float64
	id                    uint64
}

// field reads one sampling IE; false when id is not one.
func (s *sampling) field(id uint16, v []byte) bool {
	switch id {
	case ieSamplingInterval, ieSamplerRandomIntvl:
		s.interval, s.have = beUint(v), s.have|sInterval
	case ieSamplingAlgorithm, ieSamplerMode:
		s.have |= sMode
	case ieSamplerID, ieSelectorID:
		s.id, s.have = beUint(v), s.have|sID
	case ieSelectorAlgorithm:
		s.algo, s.have = uint16(beUint(v)), s.have|sAlgo
	case ieSamplingPktInterval:
		s.pktInterval, s.have = beUint(v), s.have|sPktInterval
	case ieSamplingPktSpace:
		s.pktSpace, s.have = beUint(v), s.have|sPktSpace
	case ieSamplingTimeInterval, ieSamplingTimeSpace:
		s.have |= sTime
	case ieSamplingSize:
		s.size, s.have = beUint(v), s.have|sSize
	case ieSamplingPopulation:
		s.population, s.have = beUint(v), s.have|sPopulation
	case ieSamplingProbability:
		switch len(v) {
		case 8:
			s.probability = math.Float64frombits(binary.BigEndian.Uint64(v))
		case 4:
			s.probability = float64(math.Float32frombits(binary.BigEndian.Uint32(v)))
		default:
			return true
		}
		s.have |= sProbability
	default:
		return false
	}
	return true
}

// ratio is num/den rounded to the nearest integer, 0 when den is 0.
func ratio(num, den uint64) uint64 {
	if den == 0 {
		return 0
	}
	return (num + den/2) / den
}

// rate is the sampling rate (1 in rate packets) the record gives, 0 when
// it cannot be known; said is false when the record says nothing about
// its rate. selectorAlgorithm, when present, names the IEs that count;
// without it the first of 305/306, 34/50, 309/310, 311 present does.
func (s *sampling) rate() (rate uint64, said bool) {
	countBased := func() uint64 {
		if s.have&sPktInterval == 0 {
			return 0
		}
		// 305 without 306: nothing is skipped between the runs.
		return ratio(s.pktInterval+s.pktSpace, s.pktInterval)
	}
	nOfN := func() uint64 {
		if s.have&(sSize|sPopulation) != sSize|sPopulation {
			return 0
		}
		return ratio(s.population, s.size)
	}
	prob := func() uint64 {
		p := s.probability
		if s.have&sProbability == 0 || !(p > 0 && p <= 1) {
			return 0
		}
		return uint64(math.Round(1 / p))
	}
	if s.have&sAlgo != 0 {
		switch s.algo {
		case selSystematicCount:
			r := countBased()
			if r == 0 && s.have&sInterval != 0 { // some exporters give 1 with 34 only
				r = s.interval
			}
			return r, true
		case selRandomNofN:
			return nOfN(), true
		case selUniformProb:
			return prob(), true
		case selPropertyMatch:
			return 1, true
		}
		return 0, true
	}
	switch {
	case s.have&sPktInterval != 0:
		return countBased(), true
	case s.have&sInterval != 0:
		return s.interval, true
	case s.have&(sSize|sPopulation) != 0:
		return nOfN(), true
	case s.have&sProbability != 0:
		return prob(), true
	case s.have&sTime != 0:
		return 0, true
	}
	return 0, false
}

// maxSamplers bounds the sampler ids remembered per domain; the rate of a
// sampler past it is the domain's (0 if none was said).
const maxSamplers = 64

// samplerRates is a domain's sampling rates: the one options data without
// a sampler id gave, and those given per samplerId 48 / selectorId 302.
type samplerRates struct {
	domain uint64            // 0: unknown
	byID   map[uint64]uint64 // sampler id -> rate (0: unknown)
	sole   uint64            // the rate of the only sampler, while there is one
}

// set records rate for sampler id (hasID) or for the whole domain. A new
// sampler id takes samplerCost from the state budget through charge; false
// when that is refused.
func (r *samplerRates) set(id uint64, hasID bool, rate uint64, charge func(int64) bool) bool {
	if !hasID {
		r.domain = rate
		return true
	}
	if _, ok := r.byID[id]; !ok {
		if len(r.byID) >= maxSamplers {
			return true // documented: the records of others get the domain's rate
		}
		if !charge(samplerCost) {
			return false
		}
	}
	if r.byID == nil {
		r.byID = map[uint64]uint64{}
	}
	r.byID[id] = rate
	r.sole = 0
	if len(r.byID) == 1 {
		r.sole = rate
	}
	return true
}

// of is the rate of a record of sampler id (hasID), or of a record that
// names no sampler: the domain's, else the only sampler's.
func (r *samplerRates) of(id uint64, hasID bool) uint64 {
	if hasID && r.byID != nil {
		if rate, ok := r.byID[id]; ok {
			return rate
		}
	}
	if r.domain == 0 && !hasID {
		return r.sole
	}
	return r.domain
}
