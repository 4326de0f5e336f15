//! Property: `apply(copy of old, layer(changes(old, new)))` equals `new`.
