package ring

import (
	"regexp"
	"testing"
)

func TestFingerprintFormat(t *testing.T) {
	hex16 := regexp.MustCompile(`^[0-9a-f]{16}$`)
	for _, names := range [][]string{nil, shardNames(1), shardNames(300)} {
		if got := Fingerprint(Config{}, names); !hex16.MatchString(got) {
			t.Errorf("Fingerprint(%d names) = %q, want 16 lowercase hex digits", len(names), got)
		}
	}
}

func TestFingerprintEqual(t *testing.T) {
	names := shardNames(3)
	tests := []struct {
		name   string
		cfgA   Config
		namesA []string
		cfgB   Config
		namesB []string
	}{
		{"same input", Config{}, names, Config{}, shardNames(3)},
		{"zero config is jump", Config{}, names, Config{Algorithm: Jump}, names},
		{"default partitions", Config{Algorithm: Consistent}, names, Config{Algorithm: Consistent, Partitions: DefaultPartitions}, names},
		{"jump ignores partitions", Config{Algorithm: Jump, Partitions: 11}, names, Config{Algorithm: Jump}, names},
		{"modulus ignores partitions", Config{Algorithm: Modulus, Partitions: 11}, names, Config{Algorithm: Modulus, Partitions: 12}, names},
		{"nil and empty names", Config{}, nil, Config{}, []string{}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			a, b := Fingerprint(tt.cfgA, tt.namesA), Fingerprint(tt.cfgB, tt.namesB)
			if a != b {
				t.Errorf("Fingerprint(%+v, %q) = %s, Fingerprint(%+v, %q) = %s, want equal",
					tt.cfgA, tt.namesA, a, tt.cfgB, tt.namesB, b)
			}
		})
	}
}

func TestFingerprintDiffers(t *testing.T) {
	names := shardNames(3)
	tests := []struct {
		name   string
		cfgA   Config
		namesA []string
		cfgB   Config
		namesB []string
	}{
		{"order", Config{}, names, Config{}, []string{"web-1", "web-0", "web-2"}},
		{"name", Config{}, names, Config{}, []string{"web-0", "web-1", "db-2"}},
		{"count", Config{}, names, Config{}, shardNames(4)},
		{"none and one", Config{}, nil, Config{}, []string{"web-0"}},
		{"split point", Config{}, []string{"ab", "c"}, Config{}, []string{"a", "bc"}},
		{"jump and consistent", Config{}, names, Config{Algorithm: Consistent}, names},
		{"jump and modulus", Config{}, names, Config{Algorithm: Modulus}, names},
		{"consistent and modulus", Config{Algorithm: Consistent}, names, Config{Algorithm: Modulus}, names},
		{"partitions", Config{Algorithm: Consistent, Partitions: 271}, names, Config{Algorithm: Consistent, Partitions: 272}, names},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			a, b := Fingerprint(tt.cfgA, tt.namesA), Fingerprint(tt.cfgB, tt.namesB)
			if a == b {
				t.Errorf("Fingerprint(%+v, %q) = Fingerprint(%+v, %q) = %s, want different",
					tt.cfgA, tt.namesA, tt.cfgB, tt.namesB, a)
			}
		})
	}
}

// TestFingerprintStable pins the encoding: replicas running different builds
// must still agree, so a change here is a compatibility break, not a refactor.
func TestFingerprintStable(t *testing.T) {
	got := Fingerprint(Config{}, shardNames(3))
	want := "a5d177301abf4923"
	if got != want {
		t.Errorf("Fingerprint(jump, web-0..2) = %s, want %s", got, want)
	}
}
