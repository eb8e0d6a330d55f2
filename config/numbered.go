package config

import (
	"errors"
	"fmt"
	"maps"
	"reflect"
	"regexp"
	"slices"
	"strconv"
	"strings"
)

// family is a set of numbered variables read into one raw struct per
// instance: NICs (NETWORK_*, NETWORKn_*), shares (FILESYSTEM_*,
// FILESYSTEMn_*) and disks (DISKn_SIZE, DEVICEn). In a name, a lower-case
// n stands for the number; instance 1 has none (NETWORK_MODE), instances 2
// to max have it (NETWORK2_MODE). Numbers outside the family (0, 1, above
// max, leading zeros) are refused, never ignored.
type family struct {
	what string // the instance's noun, for messages
	// prefix is every variable's start (NETWORKn_): any variable that has
	// it belongs to the family. "": only the raw struct's tags do (DISKn_SIZE).
	prefix string
	max    int
	// unnumbered: instance 1 belongs to the family (NETWORK_*); else it is
	// read elsewhere (DISK_SIZE, DEVICE) and numbers start at 2.
	unnumbered bool
	// key is the field tag whose variable, when set, makes an instance
	// exist; the instance's other variables are refused without it. "": any
	// of its variables does.
	key     string
	keyHelp string // what the key variable holds
	// always are instances that exist whatever is set (NIC 1).
	always []int
	raw    reflect.Type

	templates []string         // the prefix, or each tag
	patterns  []*regexp.Regexp // templates' names, the number a group
}

func newFamily(f family) family {
	f.templates = []string{f.prefix}
	if f.prefix == "" {
		f.templates = nil
		for i := range f.raw.NumField() {
			f.templates = append(f.templates, f.raw.Field(i).Tag.Get("env"))
		}
	}
	for _, t := range f.templates {
		before, after, _ := strings.Cut(t, "n")
		end := "$"
		if f.prefix != "" {
			end = ""
		}
		f.patterns = append(f.patterns, regexp.MustCompile("^"+regexp.QuoteMeta(before)+"([0-9]*)"+regexp.QuoteMeta(after)+end))
	}
	return f
}

var (
	nicFamily = newFamily(family{what: "NIC", prefix: "NETWORKn_", max: MaxNICs, unnumbered: true, key: "MODE", keyHelp: "nat, bridge, direct, container or none", always: []int{1},
		raw: reflect.TypeOf(rawNIC{})})
	shareFamily = newFamily(family{what: "share", prefix: "FILESYSTEMn_", max: MaxShares, unnumbered: true, key: "SOURCE", keyHelp: "the host folder to share",
		raw: reflect.TypeOf(rawShare{})})
	diskFamily = newFamily(family{what: "disk", max: MaxDisks, raw: reflect.TypeOf(rawDisk{})})
)

// name is the variable of template (a prefix or tag, with its n) for
// instance i.
func (f family) name(template string, i int) string {
	num := strconv.Itoa(i)
	if i == 1 {
		num = ""
	}
	return strings.Replace(template, "n", num, 1)
}

// match tells whether the variable k belongs to the family: its template
// and the digits standing for n ("" for instance 1).
func (f family) match(k string) (template, digits string, ok bool) {
	for i, p := range f.patterns {
		if m := p.FindStringSubmatch(k); m != nil && (m[1] != "" || f.unnumbered) {
			return f.templates[i], m[1], true
		}
	}
	return "", "", false
}

// firstName is k's name for instance 1 (NETWORK3_MTU: NETWORK_MTU); ""
// when k is not the family's.
func (f family) firstName(k string) string {
	t, digits, ok := f.match(k)
	if !ok {
		return ""
	}
	before, _, _ := strings.Cut(t, "n")
	return before + k[len(before)+len(digits):]
}

// accepted says which numbers a variable of template may have.
func (f family) accepted(template string) string {
	shown := template
	if f.prefix != "" {
		shown += "*"
	}
	s := fmt.Sprintf("%s to %s for %ss 2 to %d", f.name(shown, 2), f.name(shown, f.max), f.what, f.max)
	if f.unnumbered {
		s = fmt.Sprintf("%s for %s 1 and %s", f.name(shown, 1), f.what, s)
	}
	return s
}

// instance is one numbered instance's raw variables.
type instance[T any] struct {
	N   int
	Raw T
}

// readNumbered reads f's instances that exist in environ, in number order,
// each field set from its variable or its envDefault when unset or empty.
func readNumbered[T any](environ map[string]string, f family) ([]instance[T], error) {
	var errs []error
	present := map[int]bool{}
	for _, i := range f.always {
		present[i] = true
	}
	for _, k := range slices.Sorted(maps.Keys(environ)) {
		t, digits, ok := f.match(k)
		if !ok {
			continue
		}
		i := 1
		if digits != "" {
			i, _ = strconv.Atoi(digits)
			if i < 2 || i > f.max || digits != strconv.Itoa(i) {
				errs = append(errs, &Error{Var: k, Value: environ[k], Accepted: f.accepted(t)})
				continue
			}
		}
		if f.key == "" {
			present[i] = true
			continue
		}
		key := f.name(f.prefix+f.key, i)
		if _, set := environ[key]; !set && !present[i] {
			errs = append(errs, &Error{Var: k, Value: environ[k], Accepted: fmt.Sprintf("only together with %s (%s)", key, f.keyHelp)})
			continue
		}
		present[i] = true
	}
	var out []instance[T]
	for _, i := range slices.Sorted(maps.Keys(present)) {
		var raw T
		v := reflect.ValueOf(&raw).Elem()
		for j := range v.NumField() {
			tag := v.Type().Field(j).Tag
			val := environ[f.name(f.prefix+tag.Get("env"), i)]
			if val == "" {
				val = tag.Get("envDefault")
			}
			v.Field(j).SetString(val)
		}
		out = append(out, instance[T]{N: i, Raw: raw})
	}
	return out, errors.Join(errs...)
}
