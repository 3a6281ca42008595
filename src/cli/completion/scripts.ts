/**
 * The completion scripts: the lookup tables (tables.ts) and a driver per shell that walks the
 * words before the cursor the same way in each: options that take a value skip their value (and
 * `--home DIR` is remembered, so dynamic values come from that home), known subcommands extend
 * the command path, anything else counts as a positional argument. Key ids, roles and operators
 * are asked of `dsk __complete SOURCE` at TAB time (read from the home without unsealing).
 */
import { fishTables, shTables } from './tables.js';
import type { CompletionNode, Shell } from './model.js';

/** The walk, in the syntax bash and zsh share; $1 is the index of the first word after `dsk`. */
const SH_WALK = `  local cpath="" expect="" w i n=0
  home=()
  for ((i = $1; i < $2; i++)); do
    w="\${ws[i]}"
    if [[ -n $expect ]]; then
      [[ $expect == --home ]] && home=(--home "$w")
      expect=""
      continue
    fi
    case "$w" in
      --|--*=*) continue ;;
      -*) _dsk_value "$cpath" "$w" >/dev/null && expect="$w"; continue ;;
    esac
    if [[ $n -eq 0 && " $(_dsk_subs "$cpath") " == *" $w "* ]]; then
      cpath="\${cpath:+$cpath }$w"
    else
      n=$((n + 1))
    fi
  done
  if [[ -n $expect ]]; then
    spec="$(_dsk_value "$cpath" "$expect")"
  elif [[ $cur == -* ]]; then
    spec="$(_dsk_opts "$cpath")"
  else
    spec="$(_dsk_subs "$cpath")"
    [[ -n $spec && $n -eq 0 ]] || spec="$(_dsk_arg "$cpath" "$n")"
  fi
`;

function bash(nodes: CompletionNode[]): string {
  return `# dsk completion for bash. Load it with:  source <(dsk completion bash)
# or install it:  dsk completion bash > /etc/bash_completion.d/dsk
${shTables(nodes)}
_dsk_walk() {
${SH_WALK}}

_dsk_complete() {
  # Walk the words as the shell will split them, not COMP_WORDS: readline also breaks words at
  # ':' and '=' (COMP_WORDBREAKS), which would turn --listen 127.0.0.1:8080 into three words.
  local cur="\${COMP_WORDS[COMP_CWORD]}" spec line="\${COMP_LINE:0:COMP_POINT}"
  local -a ws home
  read -ra ws <<< "$line"
  [[ -z $line || $line == *[[:space:]] ]] && ws+=("")
  _dsk_walk 1 $((\${#ws[@]} - 1))
  case "$spec" in
    @dir) compopt -o filenames 2>/dev/null; COMPREPLY=($(compgen -d -- "$cur")) ;;
    @file) compopt -o filenames 2>/dev/null; COMPREPLY=($(compgen -f -- "$cur")) ;;
    @dyn:*) COMPREPLY=($(compgen -W "$("\${COMP_WORDS[0]}" "\${home[@]}" __complete "\${spec#@dyn:}" 2>/dev/null | cut -f1)" -- "$cur")) ;;
    *) COMPREPLY=($(compgen -W "$spec" -- "$cur")) ;;
  esac
}
complete -F _dsk_complete dsk
`;
}

function zsh(nodes: CompletionNode[]): string {
  return `#compdef dsk
# dsk completion for zsh. Load it (after compinit) with:  source <(dsk completion zsh)
# or install it as _dsk in a directory of $fpath:  dsk completion zsh > ~/.zfunc/_dsk
${shTables(nodes)}
_dsk_walk() {
${SH_WALK}}

_dsk() {
  local cur="\${words[CURRENT]}" spec
  local -a ws home ids
  ws=("\${words[@]}")
  _dsk_walk 2 "$CURRENT"
  case "$spec" in
    @dir) _path_files -/ ;;
    @file) _files ;;
    @dyn:*)
      ids=(\${(f)"$("\${words[1]}" "\${home[@]}" __complete "\${spec#@dyn:}" 2>/dev/null)"})
      compadd -- "\${(@)ids%%$'\\t'*}" ;;
    *) [[ -n $spec ]] && compadd -- \${=spec} ;;
  esac
}
if [[ "\${funcstack[1]}" == _dsk ]]; then _dsk "$@"; else compdef _dsk dsk; fi
`;
}

function fish(nodes: CompletionNode[]): string {
  return `# dsk completion for fish. Load it with:  dsk completion fish | source
# or install it:  dsk completion fish > ~/.config/fish/completions/dsk.fish
${fishTables(nodes)}
function __dsk_complete
  set -l tokens (commandline -opc)
  set -l cmd $tokens[1]
  set -e tokens[1]
  set -l cur (commandline -ct)
  set -l cpath ''
  set -l expect ''
  set -l home
  set -l n 0
  for w in $tokens
    if test -n "$expect"
      test "$expect" = --home; and set home --home $w
      set expect ''
      continue
    end
    switch $w
      case '--' '--*=*'
        continue
      case '-*'
        __dsk_value "$cpath" $w >/dev/null; and set expect $w
        continue
    end
    if test $n -eq 0; and contains -- $w (string split ' ' -- (__dsk_subs "$cpath"))
      set cpath (string trim -- "$cpath $w")
    else
      set n (math $n + 1)
    end
  end
  set -l spec
  if test -n "$expect"
    set spec (__dsk_value "$cpath" $expect)
  else if string match -q -- '-*' $cur
    set spec (__dsk_opts "$cpath")
  else
    set spec (__dsk_subs "$cpath")
    if test -z "$spec"; or test $n -ne 0
      set spec (__dsk_arg "$cpath" $n)
    end
  end
  switch "$spec"
    case ''
      return
    case '@dir'
      __fish_complete_directories $cur
    case '@file'
      __fish_complete_path $cur
    case '@dyn:*'
      $cmd $home __complete (string replace '@dyn:' '' -- $spec) 2>/dev/null
    case '*'
      string split ' ' -- $spec
  end
end
complete -c dsk -f -a '(__dsk_complete)'
`;
}

export function completionScript(shell: Shell, nodes: CompletionNode[]): string {
  return { bash, zsh, fish }[shell](nodes);
}
