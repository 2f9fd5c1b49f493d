package checker

import (
	"testing"
	"time"
)

// A history the guarantee allows, and one broken way per check.
func TestCheck(t *testing.T) {
	base := func() *History {
		return &History{
			Initial: map[string]int64{"id:1": 1},
			Writes: []Write{
				{Proc: 1, Kind: "tx", Start: 10, End: 20, Tags: []string{"v2"}},
				{Proc: 1, Kind: "tx", Start: 30, End: Never, Tags: []string{"v3"}}, // failed: not in the log
			},
			Commits: []Commit{{Tx: "a", Tags: []string{"v2"}, Effects: map[string]int64{"id:1": 2, "nk:x": 2}}},
			Reads: []Read{
				{Key: "id:1", Start: 5, End: 15, Value: 1},  // concurrent with the write: old is fine
				{Key: "id:1", Start: 12, End: 18, Value: 2}, // concurrent: new is fine
				{Key: "id:1", Start: 25, End: 26, Value: 2},
				{Key: "nk:x", Start: 5, End: 8, Value: 0},
				{Key: "nk:x", Start: 25, End: 27, Value: 2},
				{Key: "nk:y", Start: 25, End: 27, Value: 0}, // never created
				{Key: "id:1", Start: 40, End: 41, Err: "boom"},
			},
		}
	}
	cases := []struct {
		name  string
		edit  func(h *History)
		kinds []string
	}{
		{"ok", func(*History) {}, nil},
		{"stale", func(h *History) { h.Reads = append(h.Reads, Read{Key: "id:1", Start: 25, End: 26, Value: 1}) }, []string{"stale", "linearizability"}},
		{"absent after create", func(h *History) { h.Reads = append(h.Reads, Read{Key: "nk:x", Start: 25, End: 26, Value: 0}) }, []string{"stale", "linearizability"}},
		{"phantom", func(h *History) { h.Reads = append(h.Reads, Read{Key: "id:1", Start: 25, End: 26, Value: 3}) }, []string{"phantom", "linearizability"}},
		{"lost", func(h *History) { h.Writes[1].End = 35 }, []string{"lost"}},
		{"duplicated", func(h *History) {
			h.Commits = append(h.Commits, Commit{Tx: "b", Tags: []string{"v2"}, Effects: map[string]int64{"id:1": 2}})
		}, []string{"duplicated"}},
		{"non-monotonic", func(h *History) {
			// No single read is stale against an acknowledged write, but
			// reading new then old is not linearizable.
			h.Writes[0].End = Never
			h.Reads = []Read{{Key: "id:1", Start: 12, End: 13, Value: 2}, {Key: "id:1", Start: 14, End: 15, Value: 1}, {Key: "id:1", Start: 40, End: 41, Err: "boom"}}
		}, []string{"linearizability"}},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			h := base()
			c.edit(h)
			r := Check(h, 10*time.Second)
			got := map[string]bool{}
			for _, v := range r.Violations {
				got[v.Kind] = true
			}
			for _, k := range c.kinds {
				if !got[k] {
					t.Errorf("no %s violation: %s %v", k, r.Summary(), r.Violations)
				}
			}
			if len(c.kinds) == 0 && len(r.Violations) > 0 {
				t.Errorf("violations in a correct history: %v", r.Violations)
			}
			if r.FailedReads != 1 {
				t.Errorf("failed reads %d; want 1", r.FailedReads)
			}
		})
	}
}
