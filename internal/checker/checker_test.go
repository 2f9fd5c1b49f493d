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
	// Each case twice: with the clients' intervals alone, and with the
	// database's log positions (the order the stale check then uses).
	for _, logged := range []bool{false, true} {
		for _, c := range cases {
			name := c.name
			if logged {
				name += "/logged"
			}
			t.Run(name, func(t *testing.T) {
				h := base()
				if logged {
					h.Commits[0].Logged = map[string]int64{"id:1": 15, "nk:x": 15}
				}
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
}

// G4 orders a key's writes as the database ran them, not by their clients'
// intervals. Write B started (0.82s) before write A was acknowledged
// (0.88s), so their intervals overlap and leave them unordered; but B
// waited for A's row lock and the log places it after A. A read that
// starts after B's acknowledgement (2.95s) and returns A's version is
// stale. Porcupine cannot see it either: with B linearized before A the
// history is a valid register's.
func TestCheckStaleByDatabaseOrder(t *testing.T) {
	s := func(sec float64) int64 { return int64(sec * 1e9) }
	h := func(aLogged, bLogged int64) *History {
		return &History{
			Initial: map[string]int64{"id:1": 1},
			Writes: []Write{
				{Proc: 1, Kind: "autocommit", Start: s(0.80), End: s(0.88), Tags: []string{"v2"}}, // A
				{Proc: 2, Kind: "autocommit", Start: s(0.82), End: s(2.95), Tags: []string{"v3"}}, // B
			},
			Commits: []Commit{
				{Tx: "a", Tags: []string{"v2"}, Effects: map[string]int64{"id:1": 2}, Logged: map[string]int64{"id:1": aLogged}},
				{Tx: "b", Tags: []string{"v3"}, Effects: map[string]int64{"id:1": 3}, Logged: map[string]int64{"id:1": bLogged}},
			},
			Reads: []Read{
				{Proc: 3, Key: "id:1", Start: s(0.10), End: s(0.11), Value: 1},
				{Proc: 3, Key: "id:1", Start: s(2.96), End: s(2.97), Value: 2}, // A's version
			},
		}
	}
	kinds := func(r *Result) map[string]int {
		got := map[string]int{}
		for _, v := range r.Violations {
			got[v.Kind]++
		}
		return got
	}

	// B logged after A (it ran once A's commit released the row): the
	// read of v2 is stale.
	r := Check(h(s(0.86), s(0.89)), 10*time.Second)
	if got := kinds(r); got["stale"] != 1 || len(r.Violations) != 1 {
		t.Errorf("B logged after A: want exactly one stale violation; got %v", r.Violations)
	} else {
		t.Logf("%v", r.Violations[0])
	}

	// B logged before A: A replaced B, and the read of v2 is current.
	r = Check(h(s(0.86), s(0.84)), 10*time.Second)
	if len(r.Violations) > 0 {
		t.Errorf("B logged before A: violations in a correct history: %v", r.Violations)
	}

	// Absent likewise: B deletes the row after A updated it, and a read of
	// absent after B's acknowledgement is current, of v2 stale.
	hd := h(s(0.86), s(0.89))
	hd.Writes[1].Tags = []string{"d2"}
	hd.Commits[1] = Commit{Tx: "b", Tags: []string{"d2"}, Effects: map[string]int64{"id:1": 0}, Logged: map[string]int64{"id:1": s(0.89)}}
	r = Check(hd, 10*time.Second)
	if got := kinds(r); got["stale"] != 1 || len(r.Violations) != 1 {
		t.Errorf("B deletes after A: want exactly one stale violation; got %v", r.Violations)
	}
	hd.Reads[1].Value = 0
	if r = Check(hd, 10*time.Second); len(r.Violations) > 0 {
		t.Errorf("B deletes after A, read absent: violations in a correct history: %v", r.Violations)
	}
	// And absent explained only by a commit the log places before A: B
	// deletes v1, A then inserts v2; absent after A's acknowledgement is
	// stale.
	hd = h(s(0.86), s(0.84))
	hd.Writes[1].Tags = []string{"d1"}
	hd.Commits[1] = Commit{Tx: "b", Tags: []string{"d1"}, Effects: map[string]int64{"id:1": 0}, Logged: map[string]int64{"id:1": s(0.84)}}
	hd.Reads[1].Value = 0
	if r = Check(hd, 10*time.Second); kinds(r)["stale"] != 1 || len(r.Violations) != 1 {
		t.Errorf("absent after A's insert, the delete logged before A: want exactly one stale violation; got %v", r.Violations)
	}

	// Without log positions the clients' intervals leave A and B
	// unordered, and the read is allowed.
	r = Check(h(0, 0), 10*time.Second)
	if len(r.Violations) > 0 {
		t.Errorf("no log positions: violations %v", r.Violations)
	}
}
