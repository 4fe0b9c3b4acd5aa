package main

func pgxEncrypted(r *reporter, dsn string, args []string) {}
func pqEncrypted(r *reporter, dsn string, args []string)  {}
