package decode

import (
	"sync/atomic"
	"unsafe"
)

// budget is a byte count shared by every exporter, safe for concurrent
// Decode calls: what one exporter holds, another cannot.
type budget struct {
	used atomic.Int64
	max  int64
}

// take reserves n bytes; false (nothing reserved) when they do not fit.
func (b *budget) take(n int64) bool {
	for {
		u := b.used.Load()
		if u+n > b.max {
			return false
		}
		if b.used.CompareAndSwap(u, u+n) {
			return true
		}
	}
}

func (b *budget) give(n int64) { b.used.Add(-n) }

// What state costs, as charged to Config.MaxTemplateBytes: the structs
// and a map entry's share of its map, roughly; close enough to bound the
// heap, and it follows the structs as they change.
const (
	mapEntryCost = 48
	domainCost   = int64(unsafe.Sizeof(domain{})) + 4*mapEntryCost // + its empty maps
	ifNameCost   = 16 + 4 + mapEntryCost                           // string header, key, entry
	samplerCost  = 8 + 8 + mapEntryCost                            // a sampler's id and rate
)

func templateCost(t *template) int64 {
	return int64(unsafe.Sizeof(*t)) + int64(len(t.fields))*int64(unsafe.Sizeof(tfield{})) + mapEntryCost
}
