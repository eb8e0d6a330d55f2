package image

import (
	"slices"
	"strings"
)

// suggest returns up to n names close to what the user typed: within a
// few edits (typos), or containing it ("ubuntu", "centos").
func suggest(typed string, names []string, n int) []string {
	typed = strings.ToLower(typed)
	limit := max(2, len(typed)/3)
	type cand struct {
		name string
		dist int
	}
	var cs []cand
	for _, n := range names {
		d := editDistance(typed, n)
		if d <= limit || (typed != "" && strings.Contains(n, typed)) {
			cs = append(cs, cand{n, d})
		}
	}
	slices.SortFunc(cs, func(a, b cand) int {
		if a.dist != b.dist {
			return a.dist - b.dist
		}
		return strings.Compare(a.name, b.name)
	})
	var out []string
	for i := 0; i < len(cs) && i < n; i++ {
		out = append(out, cs[i].name)
	}
	return out
}

// editDistance is the Levenshtein distance, on bytes (names are ASCII).
func editDistance(a, b string) int {
	prev := make([]int, len(b)+1)
	cur := make([]int, len(b)+1)
	for j := range prev {
		prev[j] = j
	}
	for i := 1; i <= len(a); i++ {
		cur[0] = i
		for j := 1; j <= len(b); j++ {
			cost := 1
			if a[i-1] == b[j-1] {
				cost = 0
			}
			cur[j] = min(prev[j]+1, cur[j-1]+1, prev[j-1]+cost)
		}
		prev, cur = cur, prev
	}
	return prev[len(b)]
}
