//! The attributes of procwire: `#[procwire::function]`, which makes a plain `fn` runnable in a
//! child process and registers it for `procwire::process::init`, and `#[procwire::main]`, which calls
//! `procwire::process::init` first in `main`. The code they generate names `::procwire`, so use
//! them through procwire's re-exports; procwire's `process` module documents them.

use proc_macro::TokenStream;
use proc_macro2::TokenStream as TokenStream2;
use quote::{format_ident, quote, quote_spanned};
use syn::ext::IdentExt;
use syn::spanned::Spanned;
use syn::{Error, FnArg, ItemFn, LitStr, ReturnType, Type, parse_macro_input, parse_quote};

/// Makes `fn NAME(..) -> R` runnable in a child process: keeps the function as it is and adds a
/// `static` named like the function in upper case (`square` gives `SQUARE`), a
/// `procwire::process::Function` (or a `ChannelFunction` when the first parameter is a
/// `Connection`), registered (with `inventory`) so that `procwire::process::init(&[])` finds it.
///
/// The function's name for child processes is `module_path!()::NAME` unless
/// `#[procwire::function(name = "...")]` gives one. Several parameters become one tuple
/// argument: `fn add(a: u64, b: u64) -> u64` is a `Function<(u64, u64), u64>`, no parameter is
/// `()`.
#[proc_macro_attribute]
pub fn function(args: TokenStream, item: TokenStream) -> TokenStream {
    let mut name: Option<LitStr> = None;
    let parser = syn::meta::parser(|meta| {
        if meta.path.is_ident("name") {
            name = Some(meta.value()?.parse()?);
            Ok(())
        } else {
            Err(meta.error("procwire::function takes only `name = \"...\"`"))
        }
    });
    parse_macro_input!(args with parser);
    let f = parse_macro_input!(item as ItemFn);
    expand_function(name, f).unwrap_or_else(Error::into_compile_error).into()
}

/// Calls `procwire::process::init(&[])` first in the function it is put on (`main`): in a child
/// process that runs the requested registered function and exits; in the parent it returns.
#[proc_macro_attribute]
pub fn main(args: TokenStream, item: TokenStream) -> TokenStream {
    let args = TokenStream2::from(args);
    if !args.is_empty() {
        return Error::new(args.span(), "procwire::main takes no arguments").into_compile_error().into();
    }
    let mut f = parse_macro_input!(item as ItemFn);
    f.block.stmts.insert(0, parse_quote!(::procwire::process::init(&[]);));
    quote!(#f).into()
}

fn expand_function(name: Option<LitStr>, f: ItemFn) -> syn::Result<TokenStream2> {
    let sig = &f.sig;
    if let Some(a) = &sig.asyncness {
        return Err(Error::new(a.span(), "a procwire function cannot be async: a child calls it and exits"));
    }
    if !sig.generics.params.is_empty() || sig.generics.where_clause.is_some() {
        return Err(Error::new(
            sig.generics.span(),
            "a procwire function cannot be generic: a child finds it by name, with one argument type",
        ));
    }
    if let Some(v) = &sig.variadic {
        return Err(Error::new(v.span(), "a procwire function cannot be variadic"));
    }
    let mut types = Vec::new();
    for input in &sig.inputs {
        match input {
            FnArg::Receiver(r) => {
                return Err(Error::new(r.span(), "a procwire function is a free `fn`, not a method"));
            }
            FnArg::Typed(t) => types.push((*t.ty).clone()),
        }
    }
    let channel = types.first().is_some_and(is_connection);
    let args = if channel { &types[1..] } else { &types[..] };
    let ret = match &sig.output {
        ReturnType::Default => None,
        ReturnType::Type(_, ty) => Some(ty),
    };
    if channel && ret.is_some_and(|t| !matches!(&**t, Type::Tuple(t) if t.elems.is_empty())) {
        return Err(Error::new(
            sig.output.span(),
            "a procwire function that takes a Connection returns nothing: its return is the end of the child",
        ));
    }

    let ident = &sig.ident;
    let vis = &f.vis;
    let static_ident = format_ident!("{}", ident.unraw().to_string().to_uppercase(), span = ident.span());
    let wire_name = match name {
        Some(n) => quote!(#n),
        None => {
            let s = ident.unraw().to_string();
            quote!(::core::concat!(::core::module_path!(), "::", #s))
        }
    };
    let arg_ty = match args {
        [one] => quote!(#one),
        _ => quote!((#(#args,)*)),
    };
    let vars: Vec<_> = (0..args.len()).map(|i| format_ident!("arg{i}")).collect();
    // One argument: the function itself; otherwise a closure that unpacks the tuple.
    let call = match (channel, args.len()) {
        (_, 1) => quote!(#ident),
        (false, _) => quote!(|(#(#vars,)*): #arg_ty| #ident(#(#vars),*)),
        (true, _) => quote!(|conn: ::procwire::Connection, (#(#vars,)*): #arg_ty| #ident(conn, #(#vars),*)),
    };
    let (kind, ty) = if channel {
        ("ChannelFunction", quote!(::procwire::process::ChannelFunction<#arg_ty>))
    } else {
        let ret = ret.map_or_else(|| quote!(()), |t| quote!(#t));
        ("Function", quote!(::procwire::process::Function<#arg_ty, #ret>))
    };
    let doc = format!(
        "The procwire `{kind}` of [`{}`], made and registered by `#[procwire::function]`.",
        ident.unraw()
    );
    let location = quote_spanned!(ident.span()=> ::core::concat!(::core::file!(), ":", ::core::line!()));
    Ok(quote! {
        #f

        #[doc = #doc]
        #vis static #static_ident: #ty = <#ty>::new(#wire_name, #call);

        ::procwire::__private::inventory::submit! {
            ::procwire::__private::Registration::new(&#static_ident, #location)
        }
    })
}

/// Whether `ty` names procwire's `Connection` (written `Connection` or as a path ending in it).
fn is_connection(ty: &Type) -> bool {
    match ty {
        Type::Path(p) => {
            p.qself.is_none()
                && p.path.segments.last().is_some_and(|s| s.ident == "Connection" && s.arguments.is_none())
        }
        _ => false,
    }
}
