package heuristics

// The pattern lists of the heuristics. They are xtrail's own, written from
// spec §4's descriptions and the public anatomy of each attack; the
// descriptions (the events' info text) are Maltrail's, so events read the
// same. Every pattern is matched on lowercased text.

// family is one suspicious-request class (spec §4, "suspicious request"):
// a request is of the family when one of its rules matches the unquoted,
// lowercased path (or POST body). A rule matches when one of its trigger
// literals occurs and, if it has one, its expression matches too.
// Triggers keep the regular expressions off clean traffic, and small
// expressions (one per rule) keep Go's backtracking matcher in use when
// they do run.
type family struct {
	desc  string
	rules []rule
}

type rule struct {
	triggers []string
	re       string // RE2 on lowercased text, (?s) is added; "" = a trigger suffices
}

// Maltrail's order: the first family that matches names the event.
const (
	famSQL = iota
	famXML
	famPHP
	famLDAP
	famXSS
	famXXE
	famSSTI
	famLeak
	famConfig
	famRCE
	famTraversal
	famWebScan
	famDNSChanger
	numFamilies
)

func trig(s ...string) []string { return s }

var families = [numFamilies]family{
	famSQL: {"potential sql injection", []rule{
		{trig("union"), `\bunion\b[\s/*()+]+(?:(?:all|distinct)\b[\s/*()+]+)?\(*select\b`},
		{trig("select"), `\bselect\b[\s/*()+].{0,200}?\bfrom\b[\s/*()+]+[\w.\x60"\[]`},
		{trig("sleep", "benchmark", "extractvalue", "updatexml", "load_file", "group_concat"),
			`\b(?:sleep|pg_sleep|benchmark|extractvalue|updatexml|load_file|group_concat)\s*\(`},
		{trig("waitfor"), `\bwaitfor\s+delay\s+'`},
		{trig("information_schema", "@@version", "xp_cmdshell"), ""},
		{trig("outfile", "dumpfile"), `\binto\s+(?:out|dump)file\b`},
		{trig("'", "\""), `['"]\s*(?:or|and)\s+['"]?\w+['"]?\s*(?:=|<|>|\blike\b)|['"]\s*(?:--|#|/\*)`},
		{trig("or 1", "or+1"), `\bor[\s+]+1\s*=\s*1\b`},
		{trig("order by", "order+by"), `\border[\s+]+by[\s+]+\d+\s*(?:--|#)`},
		{trig("char(", "concat("), `\b(?:char|concat)\s*\(\s*(?:0x[0-9a-f]+|\d+\s*,)`},
	}},
	famXML: {"potential xml injection", []rule{
		{trig("<![cdata[", "]]>", "<xsl:", "<?xml-stylesheet"), ""},
	}},
	// Paths reach the families with "//" made "/" (as in Maltrail), so
	// "php://" is searched as "php:/".
	famPHP: {"potential php injection", []rule{
		{trig("<?php", "php:/", "phar:/", "expect:/", "zlib:/", "glob:/", "data:/", "allow_url_include",
			"auto_prepend_file", "phpinfo(", "base64_decode(", "gzinflate(", "str_rot13(", "call_user_func", "assert(",
			"passthru(", "shell_exec(", "proc_open(", "popen(", "file_put_contents(", "create_function("), ""},
	}},
	famLDAP: {"potential ldap injection", []rule{
		{trig("*)(", ")(|", ")(&", ")(!", "(|(", "(&("),
			`(?:\*\)|\))\s*\(\s*[|&!]?\s*\(?\s*[\w-]+\s*[~<>]?=|\(\s*[|&]\s*\(\s*[\w-]+\s*[~<>]?=`},
	}},
	famXSS: {"potential xss injection", []rule{
		{trig("<script", "<svg", "<img", "<iframe", "<body", "<object", "<embed", "<details", "<video", "<audio", "<math", "<style"),
			`<\s*(?:script|svg|img|iframe|body|object|embed|details|video|audio|math|style)\b`},
		{trig("onerror", "onload", "onmouseover", "onfocus", "onclick", "ontoggle", "onanimationstart", "onpointerenter"),
			`\bon(?:error|load|mouseover|focus|click|toggle|animationstart|pointerenter)\s*=`},
		{trig("javascript:", "vbscript:", "document.cookie", "document.domain"), ""},
		{trig("alert", "prompt", "confirm"), `\b(?:alert|prompt|confirm)\s*[(\x60]`},
		{trig("fromcharcode", "srcdoc", "expression("), `\bstring\.fromcharcode\s*\(|\bsrcdoc\s*=|\bexpression\s*\(`},
	}},
	famXXE: {"potential xxe injection", []rule{
		{trig("<!entity"), `<!entity\s+%|<!entity\s+[\w.-]+\s+(?:system|public)\b`},
		{trig("<!doctype"), `<!doctype\s+[\w:.-]+\s*\[`},
	}},
	famSSTI: {"potential ssti injection", []rule{
		{trig("{{"), `\{\{\s*[\w.'"\[\]()|*+/ -]{1,100}\}\}`},
		{trig("${", "#{"), `[$#]\{\s*\d+\s*[*+/-]\s*\d+\s*\}`},
		{trig("<%="), `<%=\s*[\w.'"()*+/ -]{1,100}%>`},
		{trig("{%"), `\{%\s*(?:import|include|set|if|for|print|debug|extends)\b`},
		{trig("__class__", "__globals__", "__mro__", "__subclasses__", "__builtins__"), ""},
	}},
	famLeak: {"potential data leakage", []rule{
		{trig("imei=", "meid=", "imsi=", "iccid="), `\b(?:imei|meid)=\d{14,16}\b|\bimsi=\d{14,15}\b|\biccid=\d{18,22}\b`},
		{trig("mac=", "bssid=", "macaddr=", "mac_address="),
			`\b(?:mac|bssid|wifi_?mac|macaddr|mac_address)=(?:[0-9a-f]{2}[:-]){5}[0-9a-f]{2}\b`},
		{trig("ccnum=", "cc_num", "card_number=", "cardnumber="), `\b(?:cc_?num(?:ber)?|card_?number)=\d{13,19}\b`},
	}},
	famConfig: {"config file access", []rule{
		{trig(".htaccess", ".htpasswd", ".htgroup", "wp-config.php", "web.config", "/.git/", "/.svn/", "/.hg/",
			"localsettings.php", "configuration.php", "config.inc.php", "/.aws/credentials", "/.ssh/", "/.docker/config.json",
			"database.yml", "/.npmrc", "/.bash_history"), ""},
		{trig("/.env"), `/\.env[.\w-]*(?:$|[?/&#])`},
	}},
	famRCE: {"potential remote code execution", []rule{
		{trig(";", "|", "`", "$(", "&&", "\n"),
			`(?:[;|\x60\n]|&&|\$\()\s*(?:cat|wget|curl|id|uname|whoami|ifconfig|nc|ncat|netcat|bash|sh|zsh|chmod|rm` +
				`|echo|ping|nslookup|ls|pwd|ps|kill|python[23]?|perl|php|ruby|busybox|tftp|ftpget|telnet|powershell|cmd)\b`},
		{trig("${jndi:", "class.module.classloader", "@java.lang.runtime", "@java.lang.processbuilder", "%{(#",
			"/dev/tcp/", "bash -i"), ""},
		{trig("wget", "curl"), `\b(?:wget|curl)\s+\S*(?:https?|ftp):/`},
		{trig("/bin/"), `/bin/(?:ba|z|da)?sh\b`},
		{trig("cmd"), `\bcmd(?:\.exe)?\s+/[ck]\b`},
		{trig("powershell"), `\bpowershell(?:\.exe)?\s+-`},
		{trig("getruntime"), `\bruntime\.getruntime\(\)\.exec`},
		{trig("nc -"), `\bnc\s+-[a-z]*e\b`},
	}},
	famTraversal: {"potential directory traversal", []rule{
		{trig(".."), `(?:\.\.[/\\]){2,}|(?:^|[/\\=])\.\.(?:[/\\]|$)`},
		{trig("etc/passwd", "etc/shadow", "etc/group", "etc/hosts", "win.ini", "system32", "boot.ini", "proc/self/"),
			`(?:^|[/\\=])(?:etc[/\\](?:passwd|shadow|group|hosts)\b|(?:windows|winnt)[/\\](?:win\.ini|system32)\b|boot\.ini\b|proc[/\\]self[/\\])`},
	}},
	famWebScan: {"potential web scan", []rule{
		{trig("acunetix", "nessus", "nikto", "netsparker", "burpcollaborator", "oastify", "interact.sh",
			"appscan", "w3af", "wvstest", "sqlmap", "dirbuster", "qualys"), ""},
	}},
	famDNSChanger: {"potential dns changer", []rule{
		{trig("dns"), `\b(?:dns(?:server)?[_-]?[12]?|primary_?dns|secondary_?dns|dns_?(?:primary|secondary)|wan_?dns\d?|dnsaddr\d?)` +
			`=\d{1,3}(?:\.\d{1,3}){3}\b`},
	}},
}

// defaultUserAgents are the built-in suspicious user agents: scanners,
// brute-forcers and exploitation tools that name themselves. Matched
// case-insensitively as substrings; the earliest match wins, the list
// order deciding between matches at one position. USER_AGENTS_FILE (or a
// Maltrail ua.txt) replaces the list.
var defaultUserAgents = []string{
	"masscan", "zgrab", "nmap", "nikto", "sqlmap", "dirbuster", "gobuster", "feroxbuster", "ffuf", "wfuzz",
	"wpscan", "joomscan", "droopescan", "nuclei", "acunetix", "netsparker", "appscan", "w3af", "arachni",
	"skipfish", "openvas", "nessus", "zmeu", "morfeus", "jorgee", "muieblackcat", "havij", "pangolin",
	"commix", "fimap", "whatweb", "(hydra)", "censysinspect", "l9explore", "l9tcpid", "hello, world",
	"python-mechanize", "jaeles", "dotdotpwn", "brutus", "webinspect", "paros", "grabber", "sysscan",
}

// defaultWhitelistPaths are path snippets that never make a suspicious
// request (WHITELIST_HTTP_REQUEST_PATHS replaces them): relative links to
// static assets that broken pages resolve with "../".
var defaultWhitelistPaths = []string{"../images/", "../img/", "../css/", "../js/", "../fonts/", "../assets/",
	"../static/", "../themes/", "../scripts/"}

// suspiciousContentTypes are response media types of scripts and
// shortcuts that a browser runs on download (spec §4, "content type").
var suspiciousContentTypes = []string{
	"application/hta", "application/x-hta", "text/x-scriptlet", "application/x-sh", "text/x-sh",
	"application/x-shellscript", "text/x-shellscript", "application/x-csh", "application/x-ms-shortcut",
	"application/vnd.ms-htmlhelp", "application/x-chm", "application/x-bat", "application/bat",
	"application/x-powershell", "text/x-powershell", "application/x-msdos-program",
}

// downloadExtensions are the direct-download extensions of spec §4.
var downloadExtensions = []string{".apk", ".bin", ".class", ".chm", ".dll", ".egg", ".exe", ".hta", ".hwp", ".lnk",
	".msi", ".pif", ".ps1", ".pyz", ".scr", ".sct", ".vsto", ".wbk", ".xpi"}

// downloadExempt: a path holding one of these is no direct download
// (spec §4).
var downloadExempt = []string{"cgi", "/scripts/", "/_vti_bin/", "/bin/", "/pub/softpaq/", "/bios/", "/pc-axis/"}

// iotPath matches the path of a download by direct IP that names a CPU
// architecture, as IoT botnets fetch their per-architecture builds
// (mirai.x86, bins/sora.arm7, x.mpsl), or a shell dropper script.
const iotPath = `(?:^|/)(?:[\w~-]*[._-])?(?:x86(?:_64)?|x64|x32|i[3-6]86|arm(?:v?[4-7]l?|64)?|aarch64|mips(?:el|64)?|mpsl` +
	`|m68k|ppc(?:64)?(?:le)?|powerpc|sparc|sh4|spc|arc|riscv64)$|/[\w.-]+\.sh$`

// suspiciousPaths name the file of a request (spec §4, "suspicious
// path"): the probe files scanners request to learn how a site answers a
// missing page. As for the request families, an expression runs only on
// a file name holding one of its triggers.
var suspiciousPaths = []struct {
	desc string
	rule
}{
	{"non-existent page", rule{trig("defaultwebpage.cgi"), ""}},
	{"potential web scan", rule{trig("existent", ".acu", "acunetix", "nikto"),
		`(?:in|non)-?existent[\w-]*\.\w+$|\.acu$|^acunetix[\w-]*\.\w+$|^nikto[\w-]*\.\w+$`}},
}
