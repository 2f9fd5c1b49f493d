package main

import (
	"bytes"
	"context"
	"encoding/json"
	"strings"
	"testing"
)

func TestBenchCommand(t *testing.T) {
	var out, errw bytes.Buffer
	err := run(context.Background(), []string{"bench", "-rows", "100", "-conc", "2", "-duration", "10ms", "-rounds", "1", "-quick", "-json", "-quiet"}, &out, &errw)
	if err != nil {
		t.Fatalf("%v\n%s", err, errw.String())
	}
	var rep struct {
		Rows []struct{ Contender string }
	}
	if err := json.Unmarshal(out.Bytes(), &rep); err != nil {
		t.Fatalf("%v\n%s", err, out.String())
	}
	if len(rep.Rows) == 0 || !strings.Contains(out.String(), "cachedsql") {
		t.Errorf("no rows:\n%s", out.String())
	}
	if err := run(context.Background(), []string{"bench", "-conc", "x"}, &out, &errw); err == nil {
		t.Error("-conc x: no error")
	}
}
