package trails

// TranslatePythonRegex rewrites a Python re pattern into Go RE2 syntax,
// as regex trails are translated (see translatePython for what is
// rewritten and what has no equivalent). Other Maltrail pattern lists
// (a ua.txt) use it too.
func TranslatePythonRegex(p string) (string, error) { return translatePython(p) }
