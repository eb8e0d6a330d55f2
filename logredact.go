package main

import (
	"strings"

	"go.uber.org/zap"
	"go.uber.org/zap/buffer"
	"go.uber.org/zap/zapcore"

	"github.com/vmrunner/vmrunner/config"
)

// redactingEncoder masks secrets in every log line: the configuration's
// literal secrets (GUEST_PASSWORD) and, inside any value, URL user info and
// query strings and QEMU's password options (config.Redact). Fields are
// masked before encoding, and the encoded line again, which also covers
// fields of any type and those added with Logger.With.
type redactingEncoder struct {
	zapcore.Encoder
	secrets []string
}

func (e redactingEncoder) Clone() zapcore.Encoder {
	return redactingEncoder{e.Encoder.Clone(), e.secrets}
}

func (e redactingEncoder) EncodeEntry(ent zapcore.Entry, fields []zapcore.Field) (*buffer.Buffer, error) {
	ent.Message = e.redact(ent.Message)
	masked := make([]zapcore.Field, len(fields))
	for i, f := range fields {
		masked[i] = e.field(f)
	}
	buf, err := e.Encoder.EncodeEntry(ent, masked)
	if err != nil {
		return buf, err
	}
	if line := buf.String(); e.redact(line) != line {
		buf.Reset()
		buf.AppendString(e.redact(line))
	}
	return buf, nil
}

func (e redactingEncoder) field(f zapcore.Field) zapcore.Field {
	switch f.Type {
	case zapcore.StringType:
		f.String = e.redact(f.String)
	case zapcore.ErrorType:
		if err, ok := f.Interface.(error); ok && err != nil {
			return zap.String(f.Key, e.redact(err.Error()))
		}
	case zapcore.StringerType:
		if s, ok := f.Interface.(interface{ String() string }); ok {
			return zap.String(f.Key, e.redact(s.String()))
		}
	}
	return f
}

func (e redactingEncoder) redact(s string) string {
	for _, secret := range e.secrets {
		s = strings.ReplaceAll(s, secret, config.Masked)
	}
	return config.Redact(s)
}
