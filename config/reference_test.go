package config

import (
	"bytes"
	"flag"
	"os"
	"strings"
	"testing"
)

var update = flag.Bool("update", false, "rewrite the generated tables of docs/reference.md")

const (
	referenceDoc   = "../docs/reference.md"
	generatedBegin = "<!-- BEGIN GENERATED: config.WriteReference -->\n"
	generatedEnd   = "<!-- END GENERATED -->"
)

// TestReference keeps docs/reference.md's variable tables equal to what
// --help prints: the contract cannot drift from the loader.
func TestReference(t *testing.T) {
	doc, err := os.ReadFile(referenceDoc)
	if err != nil {
		t.Fatal(err)
	}
	begin := bytes.Index(doc, []byte(generatedBegin))
	end := bytes.Index(doc, []byte(generatedEnd))
	if begin < 0 || end < begin {
		t.Fatalf("%s lacks the generated block's markers", referenceDoc)
	}
	var want bytes.Buffer
	if err := WriteReference(&want); err != nil {
		t.Fatal(err)
	}
	got := doc[begin+len(generatedBegin) : end]
	if bytes.Equal(got, want.Bytes()) {
		return
	}
	if *update {
		out := append(append(append([]byte{}, doc[:begin+len(generatedBegin)]...), want.Bytes()...), doc[end:]...)
		if err := os.WriteFile(referenceDoc, out, 0o644); err != nil {
			t.Fatal(err)
		}
		return
	}
	for _, line := range strings.Split(want.String(), "\n") {
		if !bytes.Contains(got, []byte(line)) {
			t.Errorf("%s lacks: %s", referenceDoc, line)
		}
	}
	t.Errorf("%s's variable tables differ from --help: go test ./config -run TestReference -update", referenceDoc)
}
