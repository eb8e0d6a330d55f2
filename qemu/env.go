package qemu

import "os"

// ChildEnv is the whole environment of the QEMU programs vmrunner starts
// (qemu-system, qemu-img): they need none of the configuration, and
// GUEST_PASSWORD must not show in their /proc/PID/environ.
func ChildEnv() []string {
	// LANG=C keeps their messages, which end up in our errors, in English.
	env := []string{"PATH=" + os.Getenv("PATH"), "LANG=C"}
	if tmp := os.Getenv("TMPDIR"); tmp != "" {
		env = append(env, "TMPDIR="+tmp) // snapshot and qemu-img temporary files
	}
	return env
}
