package main

import (
	"encoding/hex"
	"encoding/json"
	"io"
	"strings"

	"google.golang.org/protobuf/proto"
	"google.golang.org/protobuf/reflect/protoreflect"
)

// toJSON turns a message into plain JSON values for scripts: hashes (bytes)
// as hex, enums by their short name (BLOB_STATE_ACTIVE -> "ACTIVE"), 64-bit
// integers as numbers, every field present.
func toJSON(m proto.Message) map[string]any {
	return msgJSON(m.ProtoReflect())
}

func msgJSON(m protoreflect.Message) map[string]any {
	out := map[string]any{}
	fields := m.Descriptor().Fields()
	for i := 0; i < fields.Len(); i++ {
		fd := fields.Get(i)
		if fd.HasPresence() && !m.Has(fd) {
			continue
		}
		v := m.Get(fd)
		name := string(fd.Name())
		switch {
		case fd.IsList():
			l := v.List()
			arr := make([]any, l.Len())
			for j := range arr {
				arr[j] = valueJSON(fd, l.Get(j))
			}
			out[name] = arr
		case fd.IsMap():
			// The API has no map fields.
		default:
			out[name] = valueJSON(fd, v)
		}
	}
	return out
}

func valueJSON(fd protoreflect.FieldDescriptor, v protoreflect.Value) any {
	switch fd.Kind() {
	case protoreflect.BytesKind:
		return hex.EncodeToString(v.Bytes())
	case protoreflect.EnumKind:
		return enumName(fd.Enum(), v.Enum())
	case protoreflect.MessageKind, protoreflect.GroupKind:
		if !v.Message().IsValid() {
			return nil
		}
		return msgJSON(v.Message())
	}
	return v.Interface()
}

// enumName strips the enum's type prefix: BLOB_STATE_ACTIVE -> ACTIVE.
func enumName(ed protoreflect.EnumDescriptor, n protoreflect.EnumNumber) string {
	ev := ed.Values().ByNumber(n)
	if ev == nil {
		return "UNKNOWN"
	}
	return strings.TrimPrefix(string(ev.Name()), commonPrefix(ed))
}

func commonPrefix(ed protoreflect.EnumDescriptor) string {
	vals := ed.Values()
	p := string(vals.Get(0).Name())
	for i := 1; i < vals.Len(); i++ {
		n := string(vals.Get(i).Name())
		for !strings.HasPrefix(n, p) {
			p = p[:len(p)-1]
		}
	}
	// Cut back to a word boundary.
	if i := strings.LastIndex(p, "_"); i >= 0 {
		return p[:i+1]
	}
	return ""
}

func writeJSON(w io.Writer, v any) error {
	enc := json.NewEncoder(w)
	enc.SetIndent("", "  ")
	return enc.Encode(v)
}
