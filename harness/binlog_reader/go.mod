module cdc-chaos/binlogreader

go 1.22
