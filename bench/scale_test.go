package bench

import (
	"bytes"
	"encoding/json"
	"errors"
	"strings"
	"testing"
	"time"
)

// TestScaleReport checks the scale and flush-cost sections' targets,
// printing and JSON on figures made up for the purpose (the sections
// themselves need PostgreSQL and memcached).
func TestScaleReport(t *testing.T) {
	r := &Report{
		Scale: &Scale{Rows: 1_000_000, SubsetRows: scaleSubset, Conc: 8, AllNsOp: 105, SubsetNsOp: 100, Ratio: Ratio{Name: scaleRatio, Conc: 8, Median: 1.05}},
		FlushCost: &FlushCost{Statement: "UPDATE ...", KeysPerRow: 2, Servers: []string{"a"}, Servers2: []string{"a", "b"}, Points: []FlushPoint{
			{Rows: 1, Keys: 2, OverheadNs: 1000, PerKeyNs: 500},
			{Rows: 10, Keys: 20, OverheadNs: 2000, PerKeyNs: 100, Overhead2Ns: 1500},
			{Rows: 100, Keys: 200, OverheadNs: 16000, PerKeyNs: 80, Overhead2Ns: 9000},
		}},
	}
	got := map[string]Target{}
	for _, x := range scaleTargets(r) {
		got[x.Name] = x
	}
	if x, ok := got["hit latency, 1,000,000 rows vs 10,000 rows"]; !ok || !x.Met || x.Note != "" {
		t.Errorf("scale target: got %+v; want met, no note", x)
	}
	if x, ok := got["flush cost linear in keys touched"]; !ok || !x.Met || !strings.HasPrefix(x.Measured, "0.800") || !strings.Contains(x.Note, "x0.56") {
		t.Errorf("flush target: got %+v; want met, 0.800, x0.56", x)
	}
	r.FlushCost.Points[2].PerKeyNs = 200
	if x := scaleTargets(r)[1]; x.Met {
		t.Errorf("flush target with per-key cost doubling: got met (%+v)", x)
	}
	var buf bytes.Buffer
	r.Print(&buf)
	for _, want := range []string{"scale: hit over all 1,000,000 keys", "flush cost by keys touched", "2 memcached ns/write"} {
		if !strings.Contains(buf.String(), want) {
			t.Errorf("report lacks %q:\n%s", want, buf.String())
		}
	}
	b, err := r.JSON()
	if err != nil {
		t.Fatal(err)
	}
	var back struct {
		Scale     *Scale     `json:"scale"`
		FlushCost *FlushCost `json:"flush_cost"`
	}
	if err := json.Unmarshal(b, &back); err != nil || back.Scale == nil || back.FlushCost == nil || len(back.FlushCost.Points) != 3 {
		t.Errorf("JSON round trip: %v, %+v", err, back)
	}
}

func TestThousands(t *testing.T) {
	for n, want := range map[int]string{0: "0", 999: "999", 1000: "1,000", 10_000: "10,000", 1_000_000: "1,000,000"} {
		if got := thousands(n); got != want {
			t.Errorf("thousands(%d) = %q; want %q", n, got, want)
		}
	}
}

// TestPartialReport: a run stopped by a failed section keeps and prints
// what it measured before it.
func TestPartialReport(t *testing.T) {
	r := &Report{Rows: []*Row{{Workload: "pk uniform", Contender: "a plain pgx", Conc: 8, NsPerOp: 1}}}
	got, err := r.partial(true, time.Now(), errors.New("flush cost: breaker open"))
	if got != r || err == nil || r.Failed == "" || r.Elapsed == "" {
		t.Fatalf("partial = %v, %v; report %+v", got, err, r)
	}
	var buf bytes.Buffer
	r.Print(&buf)
	for _, want := range []string{"RUN STOPPED: flush cost: breaker open", "a plain pgx"} {
		if !strings.Contains(buf.String(), want) {
			t.Errorf("printed report lacks %q:\n%s", want, buf.String())
		}
	}
}
